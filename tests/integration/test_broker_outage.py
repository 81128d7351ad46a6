"""Kafka stopped while clients POST events: a quick 503, never a 202 for a lost event."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from leadedge.config import bootstrap_servers
from leadedge.rules.partitioning import partition_of
from tests.integration.checks import JSON
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import produce, read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 20


@dataclass
class Answer:
    status: int
    seconds: float
    ids: list[str]
    retry_after: str | None


def test_kafka_stopped_during_posts_gets_503_within_5s_and_loses_no_event_answered_202(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    if endpoints.stack is None:
        pytest.skip("the outage is injected with `leadedge stack stop`; not with Docker")
    names = Names()
    worker = start_worker(names)
    answers: list[Answer] = []
    done = threading.Event()

    def post_until_done() -> None:
        batch = 0
        while not done.is_set():
            ids = [f"outage-{batch}-{n}" for n in range(5)]
            body = orjson.dumps([{"id": i, "clicks": "+1"} for i in ids])
            started = time.monotonic()
            try:
                status, _, headers = worker.call("POST", "/requests", body, JSON)
            except OSError:
                status, headers = -1, {}
            answers.append(
                Answer(status, time.monotonic() - started, ids, headers.get("Retry-After"))
            )
            batch += 1
            time.sleep(0.1)

    client = threading.Thread(target=post_until_done)
    client.start()
    try:
        wait_for(lambda: sum(a.status == 202 for a in answers) >= 10, 60, "202s before the outage")
        endpoints.stack.stop("kafka")
        time.sleep(OUTAGE_S)
    finally:
        endpoints.stack.start("kafka")
    wait_for(lambda: answers[-1].status == 202, 120, "202s after the outage")
    done.set()
    client.join()

    refused = [a for a in answers if a.status == 503]
    assert refused, "no POST fell into the outage"
    assert all(a.seconds <= 5 for a in refused), max(a.seconds for a in refused)
    assert all(a.retry_after == "1" for a in refused)
    assert {a.status for a in answers} <= {202, 503}, [a.status for a in answers]

    accepted = {i for a in answers if a.status == 202 for i in a.ids}
    stored = {
        record.key.decode()
        for record in read_all(endpoints.broker, names.requests_topic, len(accepted), 60)
        if record.key is not None
    }
    assert accepted <= stored, sorted(accepted - stored)[:10]


def test_sigterm_with_kafka_down_exits_within_the_shutdown_bound(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    if endpoints.stack is None:
        pytest.skip("the outage is injected with `leadedge stack stop`; not with Docker")
    bound_s = 10
    worker = start_worker(Names(), extra={"LEADEDGE_SHUTDOWN_TIMEOUT_S": str(bound_s)})
    worker.wait_settled(quiet_s=2)
    assert worker.process is not None
    endpoints.stack.stop("kafka")
    try:
        time.sleep(3)
        started = time.monotonic()
        os.killpg(worker.process.pid, signal.SIGTERM)
        worker.process.wait(timeout=bound_s + 60)
        took = time.monotonic() - started
    finally:
        endpoints.stack.start("kafka")
    assert took <= bound_s + 5, f"took {took:.1f} s; log:\n{worker.log_tail()}"


def delete_all_records(broker: str, topic: str) -> int:
    """Delete every record now in `topic` (kafka-delete-records); returns how many."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker))
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker))
        await consumer.start()
        await admin.start()
        try:
            # The test workers' topics have 4 partitions (tests/integration/worker.py).
            partitions = [TopicPartition(topic, p) for p in range(4)]
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in partitions})
            return sum(ends[tp] - starts[tp] for tp in partitions)
        finally:
            await admin.close()
            await consumer.stop()

    return asyncio.run(run())


def events(prefix: str, count: int) -> list[tuple[bytes | None, bytes]]:
    return [
        (f"{prefix}-{n}".encode(), orjson.dumps({"id": f"{prefix}-{n}", "clicks": "+1"}))
        for n in range(count)
    ]


def test_records_deleted_before_a_lagging_worker_read_them_are_counted_logged_and_reported(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    names = Names()
    first = start_worker(names, name="first")
    kept = events("kept", 20)
    # Every partition gets a committed offset: a partition the group never read starts
    # at the log start, where nothing counts as skipped.
    assert {partition_of(key.decode(), 4) for key, _ in kept if key} == set(range(4))
    produce(endpoints.broker, names.requests_topic, kept)
    wait_for(lambda: first.get("/requests/kept-19")[0] == 200, 60, "the first events merged")
    first.wait_settled(quiet_s=2)
    first.kill(signal.SIGTERM)  # a clean stop: its offsets are committed

    # While no worker reads, 30 events arrive and the broker deletes them (as retention
    # would), then 10 more arrive.
    produce(endpoints.broker, names.requests_topic, events("lost", 30))
    assert delete_all_records(endpoints.broker, names.requests_topic) == 50
    produce(endpoints.broker, names.requests_topic, events("after", 10))

    second = start_worker(names, name="second")
    wait_for(lambda: second.get("/requests/after-9")[0] == 200, 90, "the later events merged")
    assert second.get("/requests/lost-0")[0] == 404

    def skipped_by(reader: str) -> float:
        # The merge's count is under the topic's name, the archive's (it reads on its own,
        # in a process of its own) under "<topic> (archive)".
        label = f'topic="{names.requests_topic}{reader}"'
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in second.get_text("/metrics").splitlines()
            if line.startswith("leadedge_skipped_records_total{") and label in line
        )

    assert skipped_by("") == 30
    wait_for(lambda: skipped_by(" (archive)") == 30, 30, "the archive's 30 skipped counted")
    status, health = second.get("/health")
    assert (status, health["status"]) == (200, "degraded")
    skipped = health["skipped_records"]
    assert sum(n for name, n in skipped.items() if "(archive)" not in name) == 30
    assert sum(n for name, n in skipped.items() if "(archive)" in name) == 30
    log_text = second.log_path.read_text()
    assert "were deleted by the broker before they were read" in log_text
    assert f"{names.requests_topic} (archive)[" in log_text
