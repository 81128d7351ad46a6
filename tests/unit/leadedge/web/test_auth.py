from __future__ import annotations

from pathlib import Path

import pytest

from leadedge.exceptions import ConfigError
from leadedge.web.auth import KeyStore, add_key


def test_a_created_key_maps_to_its_project_and_is_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key_a = add_key(path, "alpha")
    key_b = add_key(path, "beta")
    stored = path.read_text()
    assert key_a not in stored and key_b not in stored
    keys = KeyStore.load(path)
    assert keys.enabled
    assert keys.project_for(f"Bearer {key_a}") == "alpha"
    assert keys.project_for(f"Bearer {key_b}") == "beta"
    assert keys.project_for("Bearer le_nope") is None
    assert keys.project_for(key_a) is None  # not a Bearer header
    assert keys.project_for(None) is None
    assert path.stat().st_mode & 0o077 == 0


def test_no_keys_file_means_authentication_is_off() -> None:
    assert not KeyStore.load(None).enabled


def test_a_missing_or_malformed_keys_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEADEDGE_API_KEYS_FILE"):
        KeyStore.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"keys": [{"project": "x"}]}')
    with pytest.raises(ConfigError, match="LEADEDGE_API_KEYS_FILE"):
        KeyStore.load(tmp_path / "bad.json")
