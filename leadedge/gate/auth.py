"""API keys: hashes in a file, each mapped to one project, or to the operators.

Keys are random 256-bit tokens, so a plain SHA-256 of the key is enough to make the file
useless to whoever reads it (no dictionary to try), and lookups stay cheap per request.

A project key reads and writes its own project's requests. An operator key reads the
operational endpoints (`/metrics`) and no project's data. The worker notices a changed
file within `RELOAD_EVERY_S`, so `leadedge keys add` and `leadedge keys revoke` need no
restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from leadedge.exceptions import ConfigError, LeadEdgeError
from leadedge.rules.validate import PROJECT_NAME

log = logging.getLogger(__name__)

KEY_PREFIX = "le_"
OPERATOR = "operator"
RELOAD_EVERY_S = 1.0
# What `keys list` shows of a hash and `keys revoke` accepts: enough to be unique.
KEY_ID_LENGTH = 12


def hash_key(key: str) -> str:
    """What the keys file stores instead of the key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def key_id(stored_hash: str) -> str:
    """The short name of a stored key: the start of its hash."""
    return stored_hash.removeprefix("sha256:")[:KEY_ID_LENGTH]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who presented a key: a project's client, or an operator (project None)."""

    project: str | None

    @property
    def operator(self) -> bool:
        """True for an operator key."""
        return self.project is None


@dataclass(frozen=True, slots=True)
class KeyStore:
    """The (hash, project or None for an operator) pairs of one version of a keys file."""

    entries: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> KeyStore:
        """The entries of a keys file's bytes; ConfigError naming the variable if malformed."""
        try:
            document = orjson.loads(raw)
            entries = tuple(_entry(item) for item in document["keys"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            msg = (
                f'LEADEDGE_API_KEYS_FILE: {path} is not {{"keys": [{{"hash", "project"}}]}}: {exc}'
            )
            raise ConfigError(msg) from None
        return cls(entries)

    def caller(self, authorization: str | None) -> Caller | None:
        """Who an Authorization header's key belongs to; None for a missing or unknown key."""
        key = presented_key(authorization)
        if key is None:
            return None
        presented = hash_key(key).encode()
        found = None
        # Every entry is compared, in constant time, whichever matches.
        for stored, project in self.entries:
            if hmac.compare_digest(stored.encode(), presented):
                found = Caller(project)
        return found


def presented_key(authorization: str | None) -> str | None:
    """The key in `Bearer <key>`, or the password of `Basic base64(user:key)`.

    Basic is what a browser sends once its reader typed the key into its login prompt:
    the report page is opened that way (any user name).
    """
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _entry(item: dict[str, Any]) -> tuple[str, str | None]:
    stored = item["hash"]
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        msg = f"hash {stored!r} is not 'sha256:<hex>'"
        raise ValueError(msg)
    if item.get("role") == OPERATOR:
        return stored, None
    project = item["project"]
    if not isinstance(project, str) or not PROJECT_NAME.fullmatch(project):
        msg = f"project {project!r} is not a project name"
        raise ValueError(msg)
    return stored, project


class ApiKeys:
    """The keys of LEADEDGE_API_KEYS_FILE, re-read when the file changes.

    Unset: authentication is off and every caller is project `default`. Set: it is on,
    even when the file holds no key (then nothing but `/health` answers). A file that
    turns malformed keeps the keys last read (an error is logged); a deleted file
    leaves no key valid.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        reload_every_s: float = RELOAD_EVERY_S,
    ) -> None:
        self.path = path
        self._clock = clock
        self._reload_every_s = reload_every_s
        self._store = KeyStore()
        self._version: tuple[int, int, int] | None = None
        self._checked_at = clock()
        if path is not None:
            if not path.exists():
                msg = (
                    f"LEADEDGE_API_KEYS_FILE: {path} does not exist "
                    "(`leadedge keys add` creates it)"
                )
                raise ConfigError(msg)
            stat = path.stat()
            self._store = KeyStore.parse(path.read_bytes(), path)
            self._version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @property
    def enabled(self) -> bool:
        """True when a keys file is configured."""
        return self.path is not None

    def caller(self, authorization: str | None) -> Caller | None:
        """Who presented the header's key, as of the file at most `reload_every_s` ago."""
        if self.path is not None and self._clock() - self._checked_at >= self._reload_every_s:
            self._checked_at = self._clock()
            self._reload(self.path)
        return self._store.caller(authorization)

    def _reload(self, path: Path) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if self._version is not None:
                log.error("LEADEDGE_API_KEYS_FILE: %s was deleted: no key is valid now", path)
            self._store, self._version = KeyStore(), None
            return
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version == self._version:
            return
        try:
            store = KeyStore.parse(path.read_bytes(), path)
        except (ConfigError, OSError) as exc:
            log.error("%s; keeping the %d keys read before", exc, len(self._store.entries))
            return
        if self._version is not None:
            log.info("LEADEDGE_API_KEYS_FILE: %d keys now valid", len(store.entries))
        self._store, self._version = store, version


def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document


def _write_document(path: Path, document: dict[str, Any]) -> None:
    # Written whole and renamed into place: a worker re-reading it never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    temporary.chmod(0o600)
    temporary.replace(path)


def add_key(path: Path, project: str | None) -> str:
    """Create a key for `project` (None: an operator key), store its hash, return the key.

    The file is created, with its folder, when it does not exist yet.
    """
    if project is not None and not PROJECT_NAME.fullmatch(project):
        msg = (
            f"project {project!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
        raise LeadEdgeError(msg)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    document = _read_document(path)
    entry: dict[str, Any] = {"hash": hash_key(key)}
    if project is None:
        entry["role"] = OPERATOR
    else:
        entry["project"] = project
    entry["created_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["keys"].append(entry)
    _write_document(path, document)
    return key


def list_keys(path: Path) -> list[dict[str, str]]:
    """Each stored key's id, project (or `operator`) and creation time, never its hash."""
    return [
        {
            "id": key_id(item["hash"]),
            "project": OPERATOR if item.get("role") == OPERATOR else item["project"],
            "created_at": item.get("created_at", ""),
        }
        for item in _read_document(path)["keys"]
    ]


def revoke_keys(path: Path, *, key: str | None = None, project: str | None = None) -> int:
    """Remove a key (given whole or by its id from `list_keys`) or every key of a project.

    Returns how many were removed.
    """
    document = _read_document(path)

    def revoked(item: dict[str, Any]) -> bool:
        if project is not None:
            return item.get("project") == project and item.get("role") != OPERATOR
        assert key is not None
        if key.startswith(KEY_PREFIX):
            return bool(hmac.compare_digest(item["hash"], hash_key(key)))
        return len(key) >= 8 and key_id(item["hash"]).startswith(key)

    kept = [item for item in document["keys"] if not revoked(item)]
    removed = len(document["keys"]) - len(kept)
    if removed:
        document["keys"] = kept
        _write_document(path, document)
    return removed
