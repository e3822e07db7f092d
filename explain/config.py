"""Explanation layer: which model explains events, read from the environment or app secrets.

No Streamlit here: the UI passes ``st.secrets`` in as a plain mapping. The API key is never
shown: ``repr``/``str`` mask it, so a config can be logged or displayed safely.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlparse

__all__ = ["ExplainerConfig", "load_config", "DEFAULT_MODEL", "DEFAULT_TIMEOUT", "OPENAI_URL"]

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 20.0
#: Used when only a key is set; passed explicitly so a stray OPENAI_BASE_URL cannot redirect it.
OPENAI_URL = "https://api.openai.com/v1"
#: Key sent to local OpenAI-compatible servers (Ollama, vLLM, LM Studio) that need none.
NO_KEY = "not-needed"

_ENV_NAMES = {"api_key": "OPENAI_API_KEY", "base_url": "OPENAI_BASE_URL",
              "model": "OPENAI_MODEL", "timeout": "OPENAI_TIMEOUT"}


@dataclass(frozen=True, repr=False)
class ExplainerConfig:
    """Connection settings for an OpenAI-compatible chat model.

    ``enabled`` is True when a key or a base URL is set; a base URL without a key (a local
    server) sends the placeholder key ``"not-needed"``. ``timeout`` bounds every request, in
    seconds.
    """

    api_key: str = ""
    base_url: str = ""
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout)
                and 0 < self.timeout <= 600):
            raise ValueError(f"The model timeout must be between 0 and 600 seconds, "
                             f"got {self.timeout!r}.")
        if not self.model:
            raise ValueError("Name a model (OPENAI_MODEL), e.g. gpt-4o-mini or llama3.1.")

    @property
    def enabled(self) -> bool:
        return bool(self.api_key or self.base_url)

    @property
    def client_key(self) -> str:
        """The key to hand the client: the real one, or a placeholder for keyless servers."""
        return self.api_key or NO_KEY

    @property
    def url(self) -> str:
        return self.base_url or OPENAI_URL

    @property
    def host(self) -> str:
        """Host (and port) of the server, for messages such as "cannot reach localhost:11434"."""
        return urlparse(self.url).netloc or self.url

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "''"
        return (f"ExplainerConfig(api_key={key}, base_url={self.base_url!r}, "
                f"model={self.model!r}, timeout={self.timeout:g})")

    __str__ = __repr__


def _from_secrets(secrets: Mapping[str, Any] | None) -> dict[str, Any]:
    """Settings found in ``secrets``: an ``[openai]`` table, or top-level OPENAI_* keys."""
    if not secrets:
        return {}
    found: dict[str, Any] = {}
    table = secrets.get("openai")
    if isinstance(table, Mapping):
        found.update({name: table[name] for name in _ENV_NAMES
                      if table.get(name) not in (None, "")})
    for name, env_name in _ENV_NAMES.items():
        if name not in found and secrets.get(env_name) not in (None, ""):
            found[name] = secrets[env_name]
    return found


def load_config(secrets: Mapping[str, Any] | None = None) -> ExplainerConfig:
    """Build the config from ``secrets`` (e.g. ``st.secrets``) and the environment.

    Each setting is taken from ``secrets`` when present there, else from the environment
    (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL, OPENAI_TIMEOUT), else the default.
    Raises ValueError for a timeout that is not a positive number of seconds.
    """
    values = {name: os.environ.get(env_name, "").strip() for name, env_name in _ENV_NAMES.items()}
    values = {name: value for name, value in values.items() if value}
    values.update(_from_secrets(secrets))
    timeout = values.get("timeout", DEFAULT_TIMEOUT)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"OPENAI_TIMEOUT must be a number of seconds, got {timeout!r}.") from None
    return ExplainerConfig(api_key=str(values.get("api_key", "")).strip(),
                           base_url=str(values.get("base_url", "")).strip(),
                           model=str(values.get("model", DEFAULT_MODEL)).strip() or DEFAULT_MODEL,
                           timeout=timeout)
