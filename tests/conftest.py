"""Shared fixtures. Every test runs offline with its own data folder."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Point the local data folder at a temporary one so tests never touch a user's data."""
    monkeypatch.setenv("SURVEILLANCE_DATA_DIR", str(tmp_path / "data"))
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    yield


def pytest_collection_modifyitems(config, items):
    in_ci = bool(os.environ.get("CI"))
    config._in_ci = in_ci  # used by tests that must fail (not skip) in CI when a tool is missing
