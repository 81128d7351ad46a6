"""Settings read from `LEADEDGE_*` variables, as a worker reads them, for unit tests."""

from __future__ import annotations

import pytest

from leadedge.config import Settings, get_settings


def settings_with(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    """`get_settings()` with `LEADEDGE_{NAME}` set for each keyword; its cache left empty."""
    for name, value in variables.items():
        monkeypatch.setenv(f"LEADEDGE_{name.upper()}", value)
    get_settings.cache_clear()
    try:
        return get_settings()
    finally:
        get_settings.cache_clear()
