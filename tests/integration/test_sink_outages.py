"""Elasticsearch or S3 down while events flow, SIGTERM and kill -9: nothing lost."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from leadedge.config import bootstrap_servers
from leadedge.stack.s3 import S3
from tests.integration.checks import wait_indexed_as_reference
from tests.integration.conftest import WorkerFactory
from tests.integration.history import generate, reference_merge
from tests.integration.kafka_io import produce_at_rate
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, Worker, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 30


def local_stack_only(endpoints: Endpoints) -> None:
    if endpoints.stack is None:
        pytest.skip("outages are injected with `leadedge stack stop`; not available with Docker")


def produce_in_background(
    endpoints: Endpoints, topic: str, records: list[tuple[bytes, bytes]], rate: float
) -> tuple[threading.Thread, list[tuple[int, int]]]:
    positions: list[tuple[int, int]] = []
    thread = threading.Thread(
        target=lambda: positions.extend(produce_at_rate(endpoints.broker, topic, records, rate))
    )
    thread.start()
    return thread, positions


def archived_positions(
    endpoints: Endpoints, names: Names
) -> tuple[Counter[tuple[int, int]], list[str]]:
    """How often each (partition, offset) appears across the archive's objects."""
    s3 = endpoints.s3_client()
    seen: Counter[tuple[int, int]] = Counter()
    keys: list[str] = []
    for listing in s3.get_paginator("list_objects_v2").paginate(
        Bucket="leadedge", Prefix=names.s3_prefix + "/"
    ):
        for item in listing.get("Contents", []):
            keys.append(item["Key"])
            body = s3.get_object(Bucket="leadedge", Key=item["Key"])["Body"].read()
            for line in gzip.decompress(body).splitlines():
                record = orjson.loads(line)
                seen[(record["partition"], record["offset"])] += 1
    return seen, keys


def assert_archived_exactly_once(
    endpoints: Endpoints, names: Names, positions: list[tuple[int, int]], timeout: float = 120
) -> None:
    expected = set(positions)

    def complete() -> tuple[Counter[tuple[int, int]], list[str]] | None:
        seen, keys = archived_positions(endpoints, names)
        return (seen, keys) if set(seen) >= expected else None

    seen, keys = wait_for(complete, timeout, f"{len(expected)} raw events in S3", interval=2)
    assert set(seen) == expected
    assert max(seen.values()) == 1, [p for p, n in seen.items() if n > 1][:10]
    for key in keys:
        name = key.rsplit("/", 1)[1]
        topic, partition, first_offset = name.removesuffix(".ndjson.gz").split("+")
        assert topic == names.requests_topic
        assert (int(partition), int(first_offset)) in expected
        assert f"/topic={names.requests_topic}/dt=" in key and "/hour=" in key


# While Elasticsearch is away the batch engine's flush waits and intake pauses once
# LEADEDGE_FLUSH_MAX_RECORDS records are unflushed (docs/exactly-once.md, "Backpressure").
ES_OUTAGE_S = 60
ES_OUTAGE_RATE = 2_000
MEMORY_BOUND_KB = 1024 * 1024  # 1 GiB resident, the bound README states


def test_elasticsearch_down_60s_at_2000_per_s_loses_nothing_commits_nothing_stays_bounded(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    local_stack_only(endpoints)
    assert endpoints.stack is not None
    events = ES_OUTAGE_RATE * (ES_OUTAGE_S + 10)
    history = generate(ids=2_000, events=events, seed=21, step_ms=1)
    expected = reference_merge(history, city_db)
    names = Names()
    worker = start_worker(names)
    producer, _ = produce_in_background(
        endpoints, names.requests_topic, history.records, ES_OUTAGE_RATE
    )
    time.sleep(5)
    endpoints.stack.stop("elasticsearch")
    peak_kb = 0
    committed: list[dict[int, int]] = []
    degraded: list[tuple[int, dict[str, str]]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < ES_OUTAGE_S:
            peak_kb = max(peak_kb, resident_kb(worker))
            # After a commit interval, offsets acknowledged before the outage are in;
            # from then on the flush waits for Elasticsearch and nothing is committed.
            if not committed and time.monotonic() - started > 10:
                committed.append(committed_offsets(endpoints, names))
                status, health = worker.get("/health")
                degraded.append((status, health.get("degraded", {})))
            time.sleep(1)
        committed.append(committed_offsets(endpoints, names))
    finally:
        endpoints.stack.start("elasticsearch")
    producer.join()
    # While its writes were retried, /health named Elasticsearch (still 200: serving).
    [(status, parts)] = degraded
    assert status == 200 and "elasticsearch" in parts, degraded
    assert committed[0] == committed[-1], (
        f"offsets committed while Elasticsearch was down: {committed}"
    )
    assert peak_kb <= MEMORY_BOUND_KB, f"worker resident memory peaked at {peak_kb} kB"
    wait_indexed_as_reference(endpoints, names, expected, 180, interval=2)
    wait_for(lambda: worker.get("/health") == (200, {"status": "ok"}), 60, "/health ok again")


def resident_kb(worker: Worker) -> int:
    assert worker.process is not None
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def committed_offsets(endpoints: Endpoints, names: Names) -> dict[int, int]:
    """The worker group's committed offsets on `requests`, by partition."""

    async def read() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(endpoints.broker))
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(names.app_id)
        finally:
            await admin.close()
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == names.requests_topic
        }

    return asyncio.run(read())


def test_s3_down_for_30s_while_events_flow_archives_every_event_exactly_once(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    local_stack_only(endpoints)
    assert endpoints.stack is not None
    history = generate(ids=100, events=4_000, seed=22)
    names = Names()
    start_worker(names, extra={"LEADEDGE_ARCHIVE_MAX_BYTES": "8192"})
    producer, positions = produce_in_background(
        endpoints, names.requests_topic, history.records, 100
    )
    time.sleep(5)
    endpoints.stack.stop("s3")
    try:
        time.sleep(OUTAGE_S)
    finally:
        endpoints.stack.start("s3")
    producer.join()
    assert_archived_exactly_once(endpoints, names, positions)


def test_s3_refusing_writes_with_403_for_60s_stops_no_merge_and_loses_no_raw_event(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    local_stack_only(endpoints)
    assert endpoints.stack is not None
    s3 = endpoints.stack.component("s3")
    assert isinstance(s3, S3)
    history = generate(ids=100, events=3_000, seed=24)
    expected = reference_merge(history, city_db)
    names = Names()
    worker = start_worker(names, extra={"LEADEDGE_ARCHIVE_MAX_BYTES": "8192"})
    # A permanent error, not an outage: S3 answers, and refuses (403 AccessDenied).
    s3.gate_state("denied")
    try:
        denied_at = time.monotonic()
        producer, positions = produce_in_background(
            endpoints, names.requests_topic, history.records, 50
        )
        degraded = wait_for(
            lambda: (h := worker.get("/health"))[1].get("status") == "degraded" and h,
            60,
            "/health naming the failing archive",
        )
        assert degraded[0] == 200 and "AccessDenied" in degraded[1]["degraded"]["archive"]
        # The merge goes on while the archive cannot store anything.
        wait_indexed_as_reference(endpoints, names, expected, 120, interval=2)
        producer.join()
        assert archived_positions(endpoints, names)[0] == Counter()
        time.sleep(max(0.0, 60 - (time.monotonic() - denied_at)))
    finally:
        s3.gate_state("open")
    assert_archived_exactly_once(endpoints, names, positions)
    wait_for(lambda: worker.get("/health") == (200, {"status": "ok"}), 60, "/health ok again")
    metrics = worker.get_text("/metrics")
    assert 'leadedge_component_errors_total{component="archive"}' in metrics


def test_sigterm_stores_the_open_archive_buffers_before_the_worker_exits(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    history = generate(ids=20, events=300, seed=23)
    names = Names()
    # No age or size rotation within the test: only the shutdown can store these.
    worker = start_worker(names, extra={"LEADEDGE_ARCHIVE_MAX_AGE_S": "3600"})
    positions = produce_at_rate(endpoints.broker, names.requests_topic, history.records, 1000)
    wait_for(lambda: _merged_count(worker) >= 1, 30, "merging to start")
    time.sleep(3)  # let the archive consumer read everything
    assert archived_positions(endpoints, names)[0] == Counter()
    worker.kill(signal.SIGTERM)
    assert_archived_exactly_once(endpoints, names, positions, timeout=30)


def _merged_count(worker: Worker) -> float:
    for line in worker.get_text("/metrics").splitlines():
        if line.startswith('leadedge_events_total{outcome="merged"}'):
            return float(line.split()[-1])
    return 0.0


def test_kill_9_during_uploads_leaves_no_gap_and_no_duplicate_offset(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    history = generate(ids=100, events=6_000, seed=24)
    names = Names()
    # Small objects: an upload is under way most of the time.
    worker = start_worker(names, extra={"LEADEDGE_ARCHIVE_MAX_BYTES": "2048"})
    producer, positions = produce_in_background(
        endpoints, names.requests_topic, history.records, 300
    )
    for pause in (4.0, 6.5, 3.0):
        time.sleep(pause)
        worker.kill()
        worker.start()
    producer.join()
    assert_archived_exactly_once(endpoints, names, positions)


def archive_process_of(worker_pid: int) -> int | None:
    """The pid of the worker's archive process, if it has one running."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == worker_pid and state != "Z" and b"leadedge.engine.archive_process" in cmdline:
            return int(stat.parent.name)
    return None


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_archive_process_is_started_again_and_one_goes_with_a_killed_worker(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    history = generate(ids=50, events=3_000, seed=25)
    names = Names()
    worker = start_worker(names, extra={"LEADEDGE_ARCHIVE_MAX_BYTES": "4096"})
    assert worker.process is not None
    worker_pid = worker.process.pid
    producer, positions = produce_in_background(
        endpoints, names.requests_topic, history.records, 300
    )
    first = wait_for(lambda: archive_process_of(worker_pid), 30, "the archive's process")
    time.sleep(3)
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (pid := archive_process_of(worker_pid)) != first and pid,
        60,
        "a new archive process",
    )
    producer.join()
    assert_archived_exactly_once(endpoints, names, positions)
    assert 'leadedge_component_errors_total{component="archive"}' in worker.get_text("/metrics")
    wait_for(lambda: worker.get("/health") == (200, {"status": "ok"}), 60, "/health ok again")
    # The worker alone killed, not its process group: its archive process leaves with it.
    os.kill(worker_pid, signal.SIGKILL)
    worker.process.wait(timeout=30)
    worker.process = None
    wait_for(lambda: not running(second), 15, "the archive process to exit with the worker")
