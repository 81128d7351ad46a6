"""Shared pieces of the benchmarks: names, topics, worker processes, metrics, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadedge.clients.kafka_admin import TopicSpec, ensure_topics
from leadedge.config import Settings, bootstrap_servers
from leadedge.stack.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, local_s3_environment

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BROKER = "kafka://127.0.0.1:9092"
ES_URL = "http://127.0.0.1:9200"
S3_ENDPOINT = "http://127.0.0.1:9000"
PARTITIONS = 8  # the product's default (LEADEDGE_PARTITIONS)


def log(message: str) -> None:
    """Progress on stderr, so stdout stays for figures."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll until `check` returns something truthy."""
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
    msg = f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})"
    raise TimeoutError(msg)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def geoip_db() -> Path | None:
    """The City database the workers use: LEADEDGE_GEOIP_DB, else MaxMind's test one beside us."""
    configured = os.environ.get("LEADEDGE_GEOIP_DB")
    if configured:
        return Path(configured)
    beside = REPO.parent / "shared" / "geoip" / "GeoLite2-City-Test.mmdb"
    return beside if beside.exists() else None


@dataclass
class Names:
    """Fresh names for one benchmark run: every topic, group, alias and prefix starts with it."""

    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"bench{self.uid}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def app_id(self, stage: str) -> str:
        return f"{self.prefix}-{stage}"


# -- Kafka ---------------------------------------------------------------------------------


def create_topic(name: str, partitions: int = PARTITIONS, broker: str = BROKER) -> None:
    asyncio.run(ensure_topics(bootstrap_servers(broker), [TopicSpec(name, partitions, 1)]))


async def _end_offsets(broker: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


def end_offsets(topic: str, broker: str = BROKER) -> dict[int, int]:
    """Each partition's end offset."""
    return asyncio.run(_end_offsets(broker, topic))


def delete_topics(prefix: str, broker: str = BROKER) -> list[str]:
    """Delete every topic whose name contains `prefix` (ours: fresh and unique per run)."""

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker))
        await admin.start()
        try:
            # Quix names its changelog topics "changelog__{group}--…": the prefix is inside.
            ours = [t for t in await admin.list_topics() if prefix in t]
            if ours:
                await admin.delete_topics(ours)
            return ours
        finally:
            await admin.close()

    return asyncio.run(run())


# -- Elasticsearch and S3 ------------------------------------------------------------------


def http_json(method: str, url: str, body: Any = None, timeout: float = 30) -> Any:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return orjson.loads(answer.read() or b"null")


def delete_es(prefix: str, es_url: str = ES_URL) -> list[str]:
    """Delete our indices and index templates (by exact name: wildcards may be refused)."""
    deleted: list[str] = []
    with contextlib.suppress(urllib.error.HTTPError):
        for row in http_json("GET", f"{es_url}/_cat/indices/{prefix}*?format=json"):
            http_json("DELETE", f"{es_url}/{row['index']}")
            deleted.append(row["index"])
    with contextlib.suppress(urllib.error.HTTPError):
        templates = http_json("GET", f"{es_url}/_index_template/{prefix}*")
        for template in templates.get("index_templates", []):
            http_json("DELETE", f"{es_url}/_index_template/{template['name']}")
    return deleted


def delete_s3(prefix: str) -> int:
    """Delete the archive objects under our prefix."""
    import boto3

    from leadedge.config import Settings

    settings = Settings()
    client = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name=settings.s3_region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=f"{prefix}/"
    ):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys})
            count += len(keys)
    return count


# -- worker processes ----------------------------------------------------------------------

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value} (labels as exposed)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in metrics.items():
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted):
            total += value
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    fields: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


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


@dataclass
class Progress:
    """(time, count) samples of something that counts up to a goal."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    # The worker's CPU seconds when the first record was handled (start-up excluded).
    cpu_at_first: float | None = None

    def add(self, count: int) -> None:
        self.samples.append((time.monotonic(), count))

    def rate(self, goal: int) -> tuple[float, float]:
        """(events/s, seconds) from the first sample that saw work to the first at the goal.

        The count already reached at the first sample that saw work is taken off, so the
        worker's start-up (group join, recovery) is not counted against it.
        """
        started = next(((t, c) for t, c in self.samples if c > 0), None)
        finished = next(((t, c) for t, c in self.samples if c >= goal), None)
        if started is None or finished is None or finished[0] <= started[0]:
            return 0.0, 0.0
        seconds = finished[0] - started[0]
        return (finished[1] - started[1]) / seconds, seconds


def wait_until_handled(
    worker: Worker,
    goal: int,
    timeout: float,
    interval: float = 0.2,
    label: str = "merged",
    on_first: Callable[[], None] | None = None,
) -> Progress:
    """Poll the worker's counters until `goal` records are handled; returns the samples.

    `on_first` runs once the first record is handled (start-up is over).
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
        time.sleep(interval)


class CpuMeter:
    """Busy share of the whole machine (all cores) between two readings of /proc/stat."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def busy(self) -> float:
        busy, total = self._read()
        spent = total - self.start[1]
        return (busy - self.start[0]) / spent if spent else 0.0


def machine_info() -> dict[str, Any]:
    """nproc, memory, CPU model, Python."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
