from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from leadedge.exceptions import ConfigError
from leadedge.gate.auth import ApiKeys, Caller, add_key, list_keys, presented_key, revoke_keys
from leadedge.tools.cli import cli


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_a_created_key_maps_to_its_project_and_is_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key_a = add_key(path, "alpha")
    key_b = add_key(path, "beta")
    operator = add_key(path, None)
    stored = path.read_text()
    assert key_a not in stored and key_b not in stored and operator not in stored
    keys = ApiKeys(path)
    assert keys.enabled
    assert keys.caller(bearer(key_a)) == Caller("alpha")
    assert keys.caller(bearer(key_b)) == Caller("beta")
    assert keys.caller(bearer(operator)) == Caller(None)
    assert Caller(None).operator and not Caller("alpha").operator
    assert keys.caller("Bearer le_nope") is None
    assert keys.caller(key_a) is None  # not a Bearer header
    assert keys.caller(None) is None
    assert path.stat().st_mode & 0o077 == 0


def test_no_keys_file_means_authentication_is_off() -> None:
    assert not ApiKeys(None).enabled


def test_a_keys_file_without_keys_keeps_authentication_on(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "alpha")
    revoke_keys(path, key=key)
    keys = ApiKeys(path)
    assert keys.enabled
    assert keys.caller(bearer(key)) is None


def test_a_missing_or_malformed_keys_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEADEDGE_API_KEYS_FILE"):
        ApiKeys(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"keys": [{"project": "x"}]}')
    with pytest.raises(ConfigError, match="LEADEDGE_API_KEYS_FILE"):
        ApiKeys(tmp_path / "bad.json")
    (tmp_path / "empty-project.json").write_text('{"keys": [{"hash": "sha256:ab", "project": ""}]}')
    with pytest.raises(ConfigError, match="LEADEDGE_API_KEYS_FILE"):
        ApiKeys(tmp_path / "empty-project.json")


def test_added_and_revoked_keys_take_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = add_key(path, "alpha")
    clock = Clock()
    keys = ApiKeys(path, clock=clock, reload_every_s=1.0)
    second = add_key(path, "alpha")
    # Re-read at most once per interval: the new key is valid once it has passed.
    assert keys.caller(bearer(second)) is None
    clock.now = 1.0
    assert keys.caller(bearer(second)) == Caller("alpha")

    assert revoke_keys(path, key=first) == 1
    clock.now = 2.0
    assert keys.caller(bearer(first)) is None
    assert keys.caller(bearer(second)) == Caller("alpha")


def test_a_keys_file_turned_malformed_keeps_the_keys_and_a_deleted_one_keeps_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "alpha")
    clock = Clock()
    keys = ApiKeys(path, clock=clock)
    path.write_text("{half a file")
    clock.now = 1.0
    assert keys.caller(bearer(key)) == Caller("alpha")
    path.unlink()
    clock.now = 2.0
    assert keys.caller(bearer(key)) is None


def test_keys_are_revoked_by_key_by_id_or_by_project(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    alpha_1 = add_key(path, "alpha")
    add_key(path, "alpha")
    beta = add_key(path, "beta")
    add_key(path, None)
    listed = list_keys(path)
    assert [entry["project"] for entry in listed] == ["alpha", "alpha", "beta", "operator"]
    assert all(len(entry["id"]) == 12 and entry["created_at"] for entry in listed)

    assert revoke_keys(path, key="abc") == 0  # too short to name a key
    assert revoke_keys(path, key=listed[2]["id"]) == 1
    assert revoke_keys(path, project="alpha") == 2
    assert revoke_keys(path, key=alpha_1) == 0
    assert [entry["project"] for entry in list_keys(path)] == ["operator"]
    assert ApiKeys(path).caller(bearer(beta)) is None


def test_the_keys_commands_create_the_file_list_and_revoke(tmp_path: Path) -> None:
    path = tmp_path / "new" / "keys.json"
    runner = CliRunner()
    # Settings are read once per process: the commands get the file as --file here, and
    # from LEADEDGE_API_KEYS_FILE in the fresh process below.
    where = ["--file", str(path)]
    added = runner.invoke(cli, ["keys", "add", "alpha", *where])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("le_") and path.exists()
    assert runner.invoke(cli, ["keys", "add", "--operator", *where]).exit_code == 0
    assert runner.invoke(cli, ["keys", "add", *where]).exit_code != 0
    listing = runner.invoke(cli, ["keys", "list", *where]).stdout
    assert "alpha" in listing and "operator" in listing and key not in listing
    revoked = runner.invoke(cli, ["keys", "revoke", key, *where])
    assert revoked.exit_code == 0 and "revoked 1 key" in revoked.stdout
    assert ApiKeys(path).caller(bearer(key)) is None


def test_keys_add_works_before_the_keys_file_exists_in_a_fresh_process(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("leadedge")), "keys", "add", "alpha"],
        env={"LEADEDGE_API_KEYS_FILE": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert ApiKeys(path).caller(bearer(done.stdout.strip())) == Caller("alpha")


def test_a_key_is_presented_as_bearer_or_as_a_basic_password() -> None:
    basic = base64.b64encode(b"anyone:le_k").decode()
    assert presented_key("Bearer le_k") == "le_k"
    assert presented_key(f"Basic {basic}") == "le_k"
    assert presented_key("basic " + base64.b64encode(b"no-password:").decode()) is None
    assert presented_key("Basic not-base64!") is None
    assert presented_key("Bearer ") is None
    assert presented_key("Token le_k") is None
    assert presented_key(None) is None
