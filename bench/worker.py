"""One benchmark worker process: its environment, start, kill, stop, and waiting on it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    BROKER,
    ES_URL,
    PARTITIONS,
    REPO,
    S3_ENDPOINT,
    Names,
    free_port,
    geoip_db,
    log,
    wait_for,
)
from bench.measure import Progress, cpu_seconds, metric_sum, parse_metrics, proc_status
from leadedge.config import Settings
from leadedge.stack.s3 import local_s3_environment


def worker_env(
    names: Names,
    stage: str,
    requests_topic: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one worker: its own app id, output topics, alias and S3 prefix."""
    app_id = names.app_id(stage)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADEDGE_")}
    env.update(
        LEADEDGE_BROKER=BROKER,
        LEADEDGE_APP_ID=app_id,
        LEADEDGE_REQUESTS_TOPIC=requests_topic,
        LEADEDGE_MERGED_TOPIC=f"{app_id}-merged-requests",
        LEADEDGE_DLQ_TOPIC=f"{app_id}-requests-dlq",
        LEADEDGE_PARTITIONS=str(PARTITIONS),
        LEADEDGE_ES_URL=ES_URL,
        LEADEDGE_ES_ALIAS=f"{app_id}-requests",
        LEADEDGE_S3_ENDPOINT=S3_ENDPOINT,
        **local_s3_environment(),
        LEADEDGE_S3_PREFIX=f"{names.prefix}/{stage}/raw",
    )
    # Every other topic or alias the product names (the stats agent's, and any added
    # later) gets a name of ours too: nothing a benchmark worker writes lands in a
    # resource someone else uses.
    for name, spec in Settings.model_fields.items():
        variable = f"LEADEDGE_{name.upper()}"
        if variable not in env and name.endswith(("_topic", "_alias")):
            env[variable] = f"{app_id}-{spec.default}"
    db = geoip_db()
    if db is not None:
        env["LEADEDGE_GEOIP_DB"] = str(db)
    env.update(extra or {})
    return env


class Worker:
    """One `faust -A APP worker` process with its own data directory and web port."""

    def __init__(
        self,
        env: dict[str, str],
        app: str = "leadedge",
        name: str = "worker",
        loglevel: str = "info",
    ) -> None:
        self.env = env
        self.app = app
        self.loglevel = loglevel
        self.workdir = Path(tempfile.mkdtemp(prefix=f"leadedge-{name}-"))
        self.log_path = self.workdir / "worker.log"
        self.web_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 180) -> Worker:
        """Launch and wait until `/health` answers 200 (tables recovered, serving)."""
        self.launch()
        wait_for(self._healthy, timeout, f"worker {self.base_url}/health (log {self.log_path})")
        return self

    def launch(self) -> Worker:
        """Launch without waiting: the caller polls the counters from the first moment."""
        command = [
            str(Path(sys.executable).with_name("faust")),
            "--datadir",
            str(self.workdir / "data"),
            "-A",
            self.app,
            "worker",
            "--web-port",
            str(self.web_port),
            # As the Dockerfile runs it. At Faust's default (warn) its terminal spinner
            # sets the root logger to DEBUG, and every debug call builds a LogRecord.
            "-l",
            self.loglevel,
        ]
        # Before/after comparisons: BENCH_WORKER_REPO runs the worker from another
        # checkout (e.g. an older commit) with this run's harness.
        other = os.environ.get("BENCH_WORKER_REPO")
        env = self.env if not other else {**self.env, "PYTHONPATH": other}
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=other or REPO,
            )
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            msg = f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
            raise RuntimeError(msg)
        with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
            return bool(answer.status == 200)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=10) as answer:
            return parse_metrics(answer.read().decode())

    def handled(self) -> int:
        """Records the merge agent has finished with: merged + duplicate + dead letters.

        0 while the worker's web server is not up yet; an error once the process is gone.
        """
        assert self.process is not None
        if self.process.poll() is not None:
            msg = f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
            raise RuntimeError(msg)
        try:
            return int(metric_sum(self.metrics(), "leadedge_events_total"))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def rss_kb(self) -> dict[str, int]:
        return proc_status(self.pid)

    def kill(self) -> None:
        """SIGKILL (kill -9) the worker's process group; its directory (data, log) stays."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def recovery_s(self, timeout: float) -> float:
        """kill -9, start again over the same data directory: seconds until `/health` is 200.

        `/health` answers 200 once the tables are recovered and the worker serves.
        """
        self.kill()
        started = time.monotonic()
        self.launch()
        wait_for(self._healthy, timeout, f"worker {self.base_url}/health after a kill -9")
        return time.monotonic() - started

    def rebuild_s(self, timeout: float) -> float:
        """kill -9, start again WITHOUT the data directory: seconds until `/health` is 200.

        What a worker that takes over partitions without their local stores goes through
        (a new worker joining, a machine replaced): every table rebuilt from its changelog.
        """
        self.kill()
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        started = time.monotonic()
        self.launch()
        wait_for(self._healthy, timeout, f"worker {self.base_url}/health after a rebuild")
        return time.monotonic() - started

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a graceful stop), then SIGKILL; its directory (data, log) goes too."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None
        # Data directory and log: a failure has already shown the log's tail.
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_until_handled(
    worker: Worker,
    goal: int,
    timeout: float,
    interval: float = 0.2,
    label: str = "merged",
    on_first: Callable[[], None] | None = None,
    longest_interval: float = 1.0,
) -> Progress:
    """Poll the worker's counters until `goal` records are handled; returns the samples.

    `on_first` runs once the first record is handled (start-up is over). Every `interval`
    until then and near the goal; in between at most every `longest_interval`: each poll is
    a scrape of the worker's /metrics, which costs it a few milliseconds of its one core
    (five scrapes a second took about 3.5% of it), and only the two ends time the rate.
    """
    progress = Progress()
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while True:
        count = worker.handled()
        progress.add(count)
        if count > 0 and progress.cpu_at_first is None:
            progress.cpu_at_first = cpu_seconds(worker.pid)
            if on_first is not None:
                on_first()
        if count >= goal:
            return progress
        now = time.monotonic()
        if now > deadline:
            msg = f"{label}: only {count:,} of {goal:,} handled after {timeout:.0f}s"
            raise TimeoutError(msg)
        if now - last_report >= 10:
            last_report = now
            log(f"  {label}: {count:,} of {goal:,}")
        time.sleep(_pause(progress, goal, interval, longest_interval))


def _pause(progress: Progress, goal: int, shortest: float, longest: float) -> float:
    """Until the next poll: half the time the goal is still away at the latest rate."""
    if len(progress.samples) < 2 or progress.samples[-2][1] == 0:
        return shortest
    (before, seen_before), (last, seen) = progress.samples[-2:]
    rate = (seen - seen_before) / (last - before) if last > before else 0.0
    if rate <= 0:
        return shortest
    return min(longest, max(shortest, (goal - seen) / rate / 2))
