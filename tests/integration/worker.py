"""A real `faust -A leadedge worker` process with its own names, for one test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from leadedge.stack.s3 import local_s3_environment

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll until `check` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})"
    )


@dataclass
class Names:
    """Fresh topic, alias and prefix names, so tests never see each other's data."""

    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def app_id(self) -> str:
        return f"t{self.uid}"

    @property
    def requests_topic(self) -> str:
        return f"t{self.uid}-requests"

    @property
    def merged_topic(self) -> str:
        return f"t{self.uid}-merged-requests"

    @property
    def dlq_topic(self) -> str:
        return f"t{self.uid}-requests-dlq"

    @property
    def es_alias(self) -> str:
        return f"t{self.uid}-requests"

    @property
    def stats_topic(self) -> str:
        return f"t{self.uid}-request-stats"

    @property
    def stats_alias(self) -> str:
        return f"t{self.uid}-stats"

    @property
    def s3_prefix(self) -> str:
        return f"t{self.uid}/raw"


class Worker:
    """Starts, kills and restarts one worker process with a fixed data directory."""

    def __init__(self, env: dict[str, str], datadir: Path, log_path: Path) -> None:
        self.env = env
        self.datadir = datadir
        self.log_path = log_path
        self.web_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 120) -> Worker:
        faust_bin = Path(sys.executable).with_name("faust")
        command = [
            str(faust_bin),
            "--datadir",
            str(self.datadir),
            "-A",
            "leadedge",
            "worker",
            "--web-port",
            str(self.web_port),
            "-l",
            "info",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._healthy, timeout, f"worker on {self.base_url}/health (log: {self.log_path})")
        return self

    def wait_settled(self, quiet_s: float = 5.0, timeout: float = 120) -> None:
        """Wait until /health has said 200 for `quiet_s` in a row.

        A consumer group can rebalance again just after its first assignment (new topics'
        metadata arrives), and /health rightly answers 503 meanwhile.
        """
        healthy_since: list[float] = []

        def settled() -> bool:
            healthy = False
            with contextlib.suppress(urllib.error.URLError):
                healthy = self._healthy()
            if not healthy:
                healthy_since.clear()
                return False
            if not healthy_since:
                healthy_since.append(time.monotonic())
            return time.monotonic() - healthy_since[0] >= quiet_s

        wait_for(settled, timeout, f"worker on {self.base_url}/health to stay ready {quiet_s}s")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
            )
        with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
            return bool(answer.status == 200)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=60)
        self.process = None

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=10) as answer:
            return str(answer.read().decode())

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        request = urllib.request.Request(
            f"{self.base_url}{path}", data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, orjson.loads(answer.read()), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null"), dict(exc.headers)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}", timeout=10) as answer:
                return answer.status, orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null")


def worker_env(
    names: Names,
    *,
    broker: str,
    es_url: str,
    s3_endpoint: str,
    geoip_db: Path,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADEDGE_")}
    env.update(
        LEADEDGE_BROKER=broker,
        LEADEDGE_APP_ID=names.app_id,
        LEADEDGE_REQUESTS_TOPIC=names.requests_topic,
        LEADEDGE_MERGED_TOPIC=names.merged_topic,
        LEADEDGE_DLQ_TOPIC=names.dlq_topic,
        LEADEDGE_PARTITIONS="4",
        LEADEDGE_STORE="rocksdb://",
        LEADEDGE_ES_URL=es_url,
        LEADEDGE_ES_ALIAS=names.es_alias,
        LEADEDGE_STATS_TOPIC=names.stats_topic,
        LEADEDGE_STATS_ALIAS=names.stats_alias,
        LEADEDGE_S3_ENDPOINT=s3_endpoint,
        **local_s3_environment(),
        LEADEDGE_S3_PREFIX=names.s3_prefix,
        LEADEDGE_ARCHIVE_MAX_AGE_S="1",
        LEADEDGE_GEOIP_DB=str(geoip_db),
    )
    env.update(extra or {})
    return env


def delete_indices(es_url: str, aliases: set[str]) -> None:
    """Delete the indices behind a test's aliases, if any.

    Each index keeps refreshing every `LEADEDGE_ES_REFRESH_INTERVAL` while it exists, idle
    or not (an index with its refresh interval set is never left idle): a hundred tests'
    indices cost Elasticsearch more than a core, taken from every later test.
    """
    for alias in sorted(aliases):
        try:
            with urllib.request.urlopen(
                f"{es_url}/_cat/indices/{alias}-*?h=index", timeout=10
            ) as answer:
                indices = answer.read().decode().split()
            for index in indices:
                request = urllib.request.Request(f"{es_url}/{index}", method="DELETE")
                urllib.request.urlopen(request, timeout=30).close()
        except OSError:
            # Elasticsearch is down (an outage test) or the index went already.
            continue
