"""API keys: hashes in a file, each mapped to one project.

Keys are random 256-bit tokens, so a plain SHA-256 of the key is enough to make the file
useless to whoever reads it (no dictionary to try), and lookups stay cheap per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from leadedge.exceptions import ConfigError

KEY_PREFIX = "le_"


def hash_key(key: str) -> str:
    """What the keys file stores instead of the key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyStore:
    """The (hash, project) pairs of a keys file; empty means authentication is off."""

    entries: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        """True when any key is configured."""
        return bool(self.entries)

    @classmethod
    def load(cls, path: Path | None) -> KeyStore:
        """Read LEADEDGE_API_KEYS_FILE; None turns authentication off."""
        if path is None:
            return cls()
        try:
            document = orjson.loads(path.read_bytes())
            entries = tuple((item["hash"], item["project"]) for item in document["keys"])
        except FileNotFoundError:
            msg = f"LEADEDGE_API_KEYS_FILE: {path} does not exist (`leadedge keys add` creates it)"
            raise ConfigError(msg) from None
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            msg = (
                f'LEADEDGE_API_KEYS_FILE: {path} is not {{"keys": [{{"hash", "project"}}]}}: {exc}'
            )
            raise ConfigError(msg) from None
        return cls(entries)

    def project_for(self, authorization: str | None) -> str | None:
        """The project of a `Bearer <key>` header, or None for a missing or unknown key."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        presented = hash_key(authorization.removeprefix("Bearer ").strip())
        found = None
        # Every entry is compared, in constant time, whichever matches.
        for stored, project in self.entries:
            if hmac.compare_digest(stored.encode(), presented.encode()):
                found = project
        return found


def add_key(path: Path, project: str) -> str:
    """Create a key for `project`, store its hash in `path`, and return the key."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    document = orjson.loads(path.read_bytes()) if path.exists() else {"keys": []}
    document["keys"].append(
        {
            "hash": hash_key(key),
            "project": project,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    temporary.chmod(0o600)
    temporary.replace(path)
    return key
