"""A record batch corrupted on the broker's disk: dead letters for its offsets, the rest goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from leadedge.clients.kafka_admin import TopicSpec, ensure_topics
from leadedge.config import bootstrap_servers
from tests.integration.checks import archived_lines
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 4  # as the test workers run (tests/integration/worker.py)
PER_BATCH = 10
MARK = b"CORRUPT-ME-HERE"


def ids_on_partition_0(prefix: str, count: int) -> list[str]:
    """Ids the worker's partitioner puts on partition 0, so lookups find them there."""
    found: list[str] = []
    number = 0
    while len(found) < count:
        candidate = f"{prefix}-{number}"
        if (murmur2(candidate.encode()) & 0x7FFFFFFF) % PARTITIONS == 0:
            found.append(candidate)
        number += 1
    return found


def produce_batches(broker: str, topic: str, batches: list[list[tuple[str, bytes]]]) -> None:
    """Each list as one record batch of partition 0, in order."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker))
        await producer.start()
        try:
            for records in batches:
                batch = producer.create_batch()
                for request_id, value in records:
                    assert batch.append(key=request_id.encode(), value=value, timestamp=None)
                batch.close()
                await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

    asyncio.run(run())


def corrupt_on_disk(endpoints: Endpoints, topic: str) -> None:
    """Flip one byte of one record's value in partition 0's log segment."""
    assert endpoints.stack is not None
    partition_dir = Path(endpoints.stack.state_dir) / "kafka" / "data" / f"{topic}-0"
    segment = sorted(partition_dir.glob("*.log"))[-1]
    data = bytearray(segment.read_bytes())
    at = data.find(MARK)
    assert at >= 0, f"{MARK!r} not in {segment}"
    data[at] ^= 0x20  # a letter's case: the JSON stays valid, only the CRC tells
    with segment.open("r+b") as file:
        file.seek(at)
        file.write(data[at : at + 1])


def test_a_batch_corrupted_on_disk_becomes_dead_letters_and_the_partition_goes_on(
    start_worker: WorkerFactory, endpoints: Endpoints
) -> None:
    if endpoints.stack is None:
        pytest.skip("corrupts the local stack's log files")
    names = Names()
    broker = endpoints.broker
    spec = TopicSpec(names.requests_topic, PARTITIONS, 1)
    asyncio.run(ensure_topics(bootstrap_servers(broker), [spec]))
    before, bad, after = (ids_on_partition_0(p, PER_BATCH) for p in ("before", "bad", "after"))

    def event(request_id: str, mark: bytes = b"") -> tuple[str, bytes]:
        return request_id, orjson.dumps({"id": request_id, "clicks": "+1", "note": mark.decode()})

    produce_batches(
        broker,
        names.requests_topic,
        [
            [event(i) for i in before],
            [event(i, MARK if n == 4 else b"") for n, i in enumerate(bad)],
            [event(i) for i in after],
        ],
    )
    corrupt_on_disk(endpoints, names.requests_topic)
    worker = start_worker(names)

    dead = read_all(broker, names.dlq_topic, expect=PER_BATCH, timeout=90)
    headers = [dict(record.headers) for record in dead]
    assert sorted(int(h["leadedge.error.offset"]) for h in headers) == list(
        range(PER_BATCH, 2 * PER_BATCH)
    )
    assert {h["leadedge.error.reason"] for h in headers} == {b"undecodable_record"}
    assert b"CRC" in headers[0]["leadedge.error.detail"]
    # Before and after the corrupt batch: merged as if nothing had happened.
    for request_id in (*before, *after):

        def served(request_id: str = request_id) -> dict[str, object] | None:
            status, merged = worker.get(f"/requests/{request_id}")
            return merged if status == 200 else None

        assert wait_for(served, 30, f"{request_id} served")["clicks"] == 1
    assert worker.get(f"/requests/{bad[0]}")[0] == 404

    def archived() -> list[dict[str, object]] | None:
        lines = archived_lines(endpoints, names)
        return lines if len(lines) == 3 * PER_BATCH else None

    lines = wait_for(archived, 90, f"{3 * PER_BATCH} archive lines")
    by_offset = {int(str(line["offset"])): line for line in lines}
    assert sorted(by_offset) == list(range(3 * PER_BATCH))
    assert all("undecodable" in by_offset[o] for o in range(PER_BATCH, 2 * PER_BATCH))
    assert all("value" in by_offset[o] for o in (*range(PER_BATCH), *range(20, 30)))
    assert worker.get("/health")[0] == 200
