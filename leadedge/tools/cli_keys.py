"""`leadedge keys`: API keys in the keys file (add, list, revoke)."""

from __future__ import annotations

from pathlib import Path

import click

from leadedge.config import get_settings
from leadedge.exceptions import LeadEdgeError


@click.group()
def keys() -> None:
    """API keys: each belongs to one project; the keys file stores only their hashes."""


KEYS_FILE_OPTION = click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keys file [default: LEADEDGE_API_KEYS_FILE].",
)


def _keys_file(path: Path | None) -> Path:
    target = path or get_settings().api_keys_file
    if target is None:
        msg = "set LEADEDGE_API_KEYS_FILE or pass --file: which keys file?"
        raise LeadEdgeError(msg)
    return target


@keys.command("add")
@click.argument("project", required=False)
@click.option("--operator", is_flag=True, help="A key for /metrics, reading no project's data.")
@KEYS_FILE_OPTION
def keys_add(project: str | None, operator: bool, path: Path | None) -> None:
    """Create a key for PROJECT (or --operator), print it once, and store its hash.

    The keys file is created when it does not exist; running workers use the new key
    within a second.
    """
    from leadedge.gate.auth import add_key

    if operator == (project is not None):
        msg = "give a PROJECT or --operator (one of them)"
        raise click.UsageError(msg)
    target = _keys_file(path)
    key = add_key(target, None if operator else project)
    click.echo(key)
    owner = "the operators" if operator else f"project {project!r}"
    click.echo(f"stored its hash for {owner} in {target}; the key is not shown again", err=True)


@keys.command("list")
@KEYS_FILE_OPTION
def keys_list(path: Path | None) -> None:
    """Each key's id (the start of its hash), project and creation time."""
    from leadedge.gate.auth import list_keys

    for entry in list_keys(_keys_file(path)):
        click.echo(f"{entry['id']}  {entry['project']}  {entry['created_at']}")


@keys.command("revoke")
@click.argument("key", required=False)
@click.option("--project", default=None, help="Revoke every key of this project.")
@KEYS_FILE_OPTION
def keys_revoke(key: str | None, project: str | None, path: Path | None) -> None:
    """Revoke KEY (the key itself, or its id from `keys list`) or every key of --project.

    Running workers refuse a revoked key within a second.
    """
    from leadedge.gate.auth import revoke_keys

    if (key is None) == (project is None):
        msg = "give a KEY (or its id) or --project (one of them)"
        raise click.UsageError(msg)
    removed = revoke_keys(_keys_file(path), key=key, project=project)
    if not removed:
        msg = f"no key matches {key or project!r}: nothing revoked"
        raise LeadEdgeError(msg)
    click.echo(f"revoked {removed} key{'s' if removed != 1 else ''}")
