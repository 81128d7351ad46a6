"""An S3 API on 127.0.0.1:9000, served by moto, whose objects outlive a stop.

moto keeps objects in memory. Before a stop we save every bucket and object through
the S3 API into `<state_dir>/s3/data/`; after a start we put them back before the
server accepts writes from anyone else.

Snapshot layout (`data/`): `manifest.json` lists the buckets and, per object, its key,
its body's file and the arguments to put it again (content type and encoding, user
metadata, …); bodies live in `buckets/<bucket>/<url-quoted key>` (a hash for keys
too long for a file name). A save writes `data.new/` and then swaps it in, so a crash
mid-save leaves the previous snapshot current.

The server is moto's behind a small write gate (`leadedge.stack.s3_gate`): it refuses
writes (503, which S3 clients retry) from its start until the snapshot is restored,
and again from the moment a save begins, so no write can slip in between.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from leadedge.exceptions import StackError
from leadedge.stack.base import Component
from leadedge.stack.ports import HOST
from leadedge.stack.process import LaunchSpec
from leadedge.stack.s3_gate import ADMIN_HEADER, DRAIN_S, GATE_PATH, SERVER_SCRIPT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "leadedge"
ACCESS_KEY_ID = "leadedge"
SECRET_ACCESS_KEY = "leadedge-secret"
REGION = "us-east-1"
DEFAULT_PORT = 9000


def local_s3_environment() -> dict[str, str]:
    """The variables of the local S3's keys: the product has no default key pair."""
    return {
        "LEADEDGE_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "LEADEDGE_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }


#: Parallel downloads on save and uploads on restore.
WORKERS = 8
SNAPSHOT_FORMAT = 1
#: Arguments of put_object that get_object reports back and a restore passes on.
_PUT_ARGS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "Metadata",
)
_MAX_FILE_NAME = 200


def body_file_name(key: str) -> str:
    """File name of the body of `key` in a snapshot: the url-quoted key, or a hash.

    The hash (prefixed `%%`, which quoting never produces) stands in for keys whose
    quoted form is too long for a file name or is `.`/`..`.
    """
    quoted = quote(key, safe="")
    if len(quoted) <= _MAX_FILE_NAME and quoted not in (".", ".."):
        return quoted
    return "%%" + hashlib.sha256(key.encode()).hexdigest()


def _mark_admin(request: Any, **_: Any) -> None:
    request.headers[ADMIN_HEADER] = "1"


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """fn(item) for each item on WORKERS threads; the first failure cancels the rest."""
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="s3-snapshot") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class S3(Component):
    """moto's server with the bucket `leadedge`; objects persist across stop/start.

    A graceful stop (`stop s3`, `down`) saves every bucket and object to
    `<state_dir>/s3/data/`; each start (and `up`) restores them and creates the bucket
    `leadedge` if missing, before `start`/`up` return. While it restores or saves, the
    server answers writes from others with 503 (clients retry). If the process dies
    without a graceful stop (e.g. kill -9), what was written since the last graceful
    stop is lost; the rest comes back on the next start.
    """

    name = "s3"
    port = DEFAULT_PORT
    ready_timeout = 60.0
    stop_timeout = 10.0

    def __init__(
        self,
        state_dir: Path,
        cache_dir: Path,
        echo: Callable[[str], None],
        port: int = DEFAULT_PORT,
    ) -> None:
        super().__init__(state_dir, cache_dir, echo)
        self.port = port

    @property
    def endpoint(self) -> str:
        """URL of the S3 API."""
        return f"http://{self.address}"

    @property
    def snapshot_dir(self) -> Path:
        """The current snapshot of buckets and objects."""
        return self.home / "data"

    @property
    def script_path(self) -> Path:
        """The server script (moto behind the write gate)."""
        return self.home / "server.py"

    def prepare(self) -> LaunchSpec:
        """Check moto's server is installed, write the server script, say how to run it."""
        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
            msg = "s3: moto's server is not installed: pip install 'leadedge[stack]'"
            raise StackError(msg)
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.script_path.with_name(self.script_path.name + ".tmp")
        tmp.write_text(SERVER_SCRIPT)
        tmp.replace(self.script_path)
        env = self.base_env()
        env["PYTHONUNBUFFERED"] = "1"
        return LaunchSpec(
            argv=[sys.executable, str(self.script_path), HOST, str(self.port)],
            cwd=self.home,
            env=env,
            marker=str(self.script_path),
        )

    def is_ready(self) -> bool:
        """Probe whether the server answers HTTP (any status)."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=3):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def on_ready(self) -> None:
        """Restore the snapshot into a fresh server, create the bucket, open for writes.

        A server that already serves (e.g. `up` while it runs) is not restored again.
        """
        gate = self.gate_state()
        client = self._client()
        restoring = gate is not None and gate["state"] == "restoring"
        if restoring:
            self._restore(client)
        self._ensure_bucket(client)
        if restoring:
            self.gate_state("open")

    def before_stop(self) -> None:
        """Close the server for writes and save every bucket and object."""
        if not self.is_ready():
            self.echo("s3: not answering; objects not saved, the last snapshot stays")
            return
        gate = self.gate_state()
        if gate is None:
            self.echo("s3: this server has no write gate; writes during the save may be lost")
        elif gate["state"] == "restoring":
            self.echo("s3: objects were never restored into this server; the last snapshot stays")
            return
        else:
            gate = self.gate_state("closed")
            if gate is not None and gate["in_flight"]:
                self.echo(f"s3: {gate['in_flight']} writes still in progress; they may be lost")
        self._save(self._client())

    def gate_state(self, to: str | None = None) -> dict[str, Any] | None:
        """The write gate's state, after setting it to `to` ("open"/"closed"/"denied") if given.

        Returns {"state": "restoring"|"open"|"closed"|"denied", "in_flight": writes in progress},
        or None when the server has no gate (moto started by an older leadedge).
        """
        url = f"{self.endpoint}{GATE_PATH}" + (f"?to={to}" if to else "")
        request = urllib.request.Request(
            url, data=b"" if to else None, method="POST" if to else "GET"
        )
        try:
            with urllib.request.urlopen(request, timeout=DRAIN_S + 10) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError:
            return None
        except (OSError, ValueError) as exc:
            msg = f"s3: could not reach the write gate at {url}: {exc}"
            raise StackError(msg) from exc
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            return None
        return data

    def _client(self) -> S3Client:
        import boto3  # slow to import, needed only here
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
            config=Config(
                max_pool_connections=2 * WORKERS,
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        client.meta.events.register("before-sign.s3", _mark_admin)
        return client

    def _ensure_bucket(self, client: S3Client, bucket: str = BUCKET) -> None:
        from botocore.exceptions import ClientError

        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                msg = f"s3: could not create bucket {bucket!r}: {exc}"
                raise StackError(msg) from exc

    def _save(self, client: S3Client) -> None:
        started = time.monotonic()
        new = self.home / "data.new"
        try:
            shutil.rmtree(new, ignore_errors=True)
            new.mkdir(parents=True)
            buckets: list[dict[str, Any]] = []
            todo: list[tuple[str, str, Path]] = []
            for listed in client.list_buckets().get("Buckets", []):
                name = listed["Name"]
                folder = Path("buckets", quote(name, safe=""))
                (new / folder).mkdir(parents=True)
                buckets.append({"name": name, "dir": str(folder), "objects": []})
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                    for obj in page.get("Contents", []):
                        key = obj["Key"]
                        todo.append((name, key, new / folder / body_file_name(key)))

            def download(item: tuple[str, str, Path]) -> dict[str, Any] | None:
                bucket, key, path = item
                try:
                    got = client.get_object(Bucket=bucket, Key=key)
                except client.exceptions.NoSuchKey:
                    return None  # deleted since the listing (a server without the gate)
                size = 0
                with path.open("wb") as out:
                    for chunk in got["Body"].iter_chunks(1 << 20):
                        out.write(chunk)
                        size += len(chunk)
                fields: dict[str, Any] = dict(got)
                args = {arg: fields[arg] for arg in _PUT_ARGS if fields.get(arg)}
                return {"key": key, "file": path.name, "size": size, "args": args}

            by_name = {b["name"]: b for b in buckets}
            count = 0
            for (bucket, _, _), entry in zip(todo, _parallel(download, todo), strict=True):
                if entry is not None:
                    by_name[bucket]["objects"].append(entry)
                    count += 1
            manifest = {"format": SNAPSHOT_FORMAT, "buckets": buckets}
            (new / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            self._install_snapshot(new)
        except Exception as exc:
            shutil.rmtree(new, ignore_errors=True)
            msg = f"s3: could not save objects to {self.snapshot_dir}: {exc}"
            msg += "; the last snapshot stays"
            raise StackError(msg) from exc
        self.echo(
            f"s3: saved {count} objects in {len(buckets)} buckets to {self.snapshot_dir} "
            f"({time.monotonic() - started:.1f}s)"
        )

    def _install_snapshot(self, new: Path) -> None:
        """Make `new` the current snapshot; at any moment one complete snapshot exists."""
        current, old = self.snapshot_dir, self.home / "data.old"
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            current.rename(old)
        new.rename(current)  # a crash just before this leaves data.old, which loads
        shutil.rmtree(old, ignore_errors=True)

    def current_snapshot(self) -> Path | None:
        """Directory of the newest complete snapshot, or None when there is none."""
        for candidate in (self.snapshot_dir, self.home / "data.old"):
            if (candidate / "manifest.json").is_file():
                return candidate
        return None

    def _restore(self, client: S3Client) -> None:
        snapshot = self.current_snapshot()
        if snapshot is None:
            return
        started = time.monotonic()
        try:
            manifest = json.loads((snapshot / "manifest.json").read_text())
            if manifest.get("format") != SNAPSHOT_FORMAT:
                msg = f"unknown snapshot format {manifest.get('format')!r}"
                raise ValueError(msg)
            todo: list[tuple[str, dict[str, Any], Path]] = []
            for bucket in manifest["buckets"]:
                self._ensure_bucket(client, bucket["name"])
                for entry in bucket["objects"]:
                    todo.append((bucket["name"], entry, snapshot / bucket["dir"] / entry["file"]))

            def upload(item: tuple[str, dict[str, Any], Path]) -> None:
                bucket, entry, path = item
                with path.open("rb") as body:
                    client.put_object(Bucket=bucket, Key=entry["key"], Body=body, **entry["args"])

            _parallel(upload, todo)
        except Exception as exc:
            msg = (
                f"s3: could not restore objects from {snapshot}: {exc}; the server refuses "
                "writes until `leadedge stack start s3` restores them"
            )
            raise StackError(msg) from exc
        self.echo(
            f"s3: restored {len(todo)} objects in {len(manifest['buckets'])} buckets "
            f"from {snapshot} ({time.monotonic() - started:.1f}s)"
        )
