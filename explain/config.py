"""Explanation layer: which model explains events, read from the environment or app secrets.

No Streamlit here: the UI passes ``st.secrets`` in as a plain mapping. Credentials are never
shown: ``repr``/``str`` mask the API key, and every URL or error text that is displayed,
logged or stored goes through :func:`redact_url` / :func:`redact` first, which drop
``user:password@`` and mask key- or token-like query values.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["ExplainerConfig", "load_config", "redact", "redact_url", "DEFAULT_MODEL",
           "DEFAULT_TIMEOUT", "OPENAI_URL"]

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 20.0
#: Used when only a key is set; passed explicitly so a stray OPENAI_BASE_URL cannot redirect it.
OPENAI_URL = "https://api.openai.com/v1"
#: Key sent to local OpenAI-compatible servers (Ollama, vLLM, LM Studio) that need none.
NO_KEY = "not-needed"

#: ``scheme://user:password@`` anywhere in a text; the credentials are the group left out.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#]*@")
#: The same at the start of a bare URL setting, with or without a scheme.
_LEADING_USERINFO = re.compile(r"(?i)^((?:[a-z][a-z0-9+.\-]*://)?)[^\s/?#]*@")
#: Query parameters whose name looks like a secret: api_key, access_token, sig, password, ...
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&#\s]*(?:key|token|secret|passw|pwd|auth|sig|credential)"
                           r"[^=&#\s]*=)[^&#\s]*")
MASK = "***"


def redact(text: str, *secrets: str) -> str:
    """``text`` with the credentials of any URL in it removed and each of ``secrets`` masked.

    Applied to every error text that may hold a URL or echo a credential before it is shown,
    logged, cached or exported (server messages can quote the request URL or the key).
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # masking every "a" of a 1-letter password would garble the text
            text = text.replace(secret, MASK)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(r"\1", text))


def redact_url(url: str) -> str:
    """``url`` fit to display: no ``user:password@``, key/token-like query values masked."""
    return redact(_LEADING_USERINFO.sub(r"\1", url))


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
    def display_url(self) -> str:
        """The server's URL without credentials, for the Settings page and messages."""
        return redact_url(self.url)

    @property
    def host(self) -> str:
        """Host (and port) of the server, for messages such as "cannot reach localhost:11434"."""
        return urlsplit(self.display_url).netloc or self.display_url

    @property
    def client_url(self) -> str:
        """The URL handed to the HTTP client: without ``user:password@``, so neither the
        client's logs nor its errors can carry them (they travel in ``credentials``)."""
        return _LEADING_USERINFO.sub(r"\1", self.url)

    def _userinfo(self) -> tuple[str, str] | None:
        """(user, password) as written in the base URL's ``user:password@``, or None."""
        match = _LEADING_USERINFO.match(self.url)
        if match is None:
            return None
        user, _, password = match.group(0)[len(match.group(1)):-1].partition(":")
        return user, password

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(user, password) from the base URL, decoded: sent as HTTP Basic auth."""
        found = self._userinfo()
        return None if found is None else (unquote(found[0]), unquote(found[1]))

    def redact(self, text: str) -> str:
        """``text`` without this config's key, URL password or any URL credentials."""
        password = (self._userinfo() or ("", ""))[1]
        return redact(text, self.api_key, password, unquote(password))

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "''"
        return (f"ExplainerConfig(api_key={key}, base_url={redact_url(self.base_url)!r}, "
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
