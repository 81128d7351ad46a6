"""The raw archive (`leadedge.engine.raw_archive`) against a fake consumer and S3 sink: what it
stores, when it commits, how it recovers from S3 failures and counts deleted records."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from botocore.exceptions import ClientError

from leadedge import health
from leadedge.engine import raw_archive
from leadedge.engine.raw_archive import RawArchive
from leadedge.engine.undecodable import UNDECODABLE_HEADER
from leadedge.rules.archive import HOUR_MS
from leadedge.sinks.s3 import S3Sink
from tests.unit.leadedge.engine.fakes import NOW_MS, REQUESTS, record
from tests.unit.leadedge.settings_env import settings_with
from tests.unit.leadedge.sinks.test_s3 import client_error

P0, P1 = TopicPartition(REQUESTS, 0), TopicPartition(REQUESTS, 1)
# A value whose archive line is over 600 bytes: two of them reach the 1 KiB size limit.
BIG = orjson.dumps({"id": "r1", "pad": "x" * 600})
# 2023-11-14, 22:00-23:00 UTC, then 23:00-24:00.
HOUR_22 = "raw/topic=requests/dt=2023-11-14/hour=22/requests"
HOUR_23 = "raw/topic=requests/dt=2023-11-14/hour=23/requests"

Events = list[tuple[str, Any]]
Log = list[ConsumerRecord[bytes, bytes]]


class RecordingSink:
    """Stands in for `S3Sink`: keeps each object; each write takes the next scripted error."""

    def __init__(self, events: Events, *errors: Exception | None) -> None:
        self.events = events
        self.errors = list(errors)
        self.objects: list[tuple[str, bytes]] = []

    async def start(self) -> None:
        self.events.append(("sink start", None))

    async def write(self, objects: list[tuple[str, bytes]]) -> None:
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        for key, body in objects:
            self.objects.append((key, body))
            self.events.append(("write", key))

    async def stop(self) -> None:
        self.events.append(("sink stop", None))


class FakeConsumer:
    """aiokafka's consumer over in-memory partition logs, as `RawArchive` calls it.

    Each fetch returns up to `fetch_size` records per partition from its position (never
    below the log's first record, as auto.offset.reset does); a fetch that finds nothing
    sets `idle`.
    """

    def __init__(
        self,
        events: Events,
        logs: dict[TopicPartition, Log],
        committed: dict[TopicPartition, int] | None = None,
        fetch_size: int = 2000,
    ) -> None:
        self.events = events
        self.logs = logs
        self.offsets = dict(committed or {})
        self.position = dict(self.offsets)
        self.fetch_size = fetch_size
        self.idle = asyncio.Event()
        self.degraded_seen: list[dict[str, str]] = []

    def log_start(self, tp: TopicPartition) -> int:
        return self.logs[tp][0].offset if self.logs[tp] else 0

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, Log]:
        await asyncio.sleep(0)
        self.degraded_seen.append(health.degraded())
        fetched: dict[TopicPartition, Log] = {}
        for tp, log in self.logs.items():
            at = max(self.position.get(tp, 0), self.log_start(tp))
            records = [r for r in log if r.offset >= at][: min(self.fetch_size, max_records)]
            if records:
                fetched[tp] = records
                self.position[tp] = records[-1].offset + 1
        if not fetched:
            self.idle.set()
        return fetched

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.offsets.update(offsets)
        self.events.append(("commit", dict(offsets)))

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.offsets.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.events.append(("seek", (tp, offset)))
        self.position[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.events.append(("seek to beginning", tp))
            self.position[tp] = self.log_start(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return {tp: self.log_start(tp) for tp in partitions}

    async def stop(self) -> None:
        self.events.append(("consumer stop", None))


@pytest.fixture(autouse=True)
def clean_health() -> Iterator[None]:
    yield
    for component in list(health.degraded()):
        health.report_recovered(component)
    health._skipped.clear()


def build(
    monkeypatch: pytest.MonkeyPatch, sink: RecordingSink, consumer: FakeConsumer
) -> RawArchive:
    settings = settings_with(monkeypatch, archive_max_bytes="1024", s3_prefix="raw")
    archive = RawArchive(settings, cast(S3Sink, sink), {})
    archive.consumer = cast(Any, consumer)
    return archive


def name(hour: str, first_offset: int) -> str:
    """The name of partition 0's object that starts at `first_offset`."""
    return f"{hour}+0+{first_offset:020d}.ndjson.gz"


def lines(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in gzip.decompress(body).splitlines()]


def offsets(body: bytes) -> list[int]:
    return [line["offset"] for line in lines(body)]


def big(offset: int, partition: int = 0, timestamp_ms: int = NOW_MS) -> ConsumerRecord[Any, Any]:
    return record(BIG, b"r1", offset=offset, partition=partition, timestamp_ms=timestamp_ms)


async def test_records_become_one_object_per_hour_and_size_each_committed_once_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: Events = []
    sink = RecordingSink(events)
    log = [big(offset) for offset in range(5)] + [big(5, timestamp_ms=NOW_MS + HOUR_MS)]
    archive = build(monkeypatch, sink, FakeConsumer(events, {P0: log}))
    await archive.consume_once()
    assert events == [
        ("write", name(HOUR_22, 0)),
        ("commit", {P0: 2}),
        ("write", name(HOUR_22, 2)),
        ("commit", {P0: 4}),
        # The hour turned: offset 4 goes alone, offset 5 waits in the next hour's object.
        ("write", name(HOUR_22, 4)),
        ("commit", {P0: 5}),
    ]
    assert [offsets(body) for _, body in sink.objects] == [[0, 1], [2, 3], [4]]
    assert lines(sink.objects[0][1])[0] == {
        "topic": "requests",
        "partition": 0,
        "offset": 0,
        "timestamp": NOW_MS,
        "key": "r1",
        "value": {"id": "r1", "pad": "x" * 600},
    }
    await archive.stop()
    assert events[-4:-2] == [("write", name(HOUR_23, 5)), ("commit", {P0: 6})]


async def test_odd_keys_values_and_undecodable_offsets_each_get_a_line_saying_what_they_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: Events = []
    sink = RecordingSink(events)
    undecodable = dataclasses.replace(
        record(None, offset=2), headers=[(UNDECODABLE_HEADER, b"fails its CRC check")]
    )
    log = [record(b"not json", b"\xff\xfe", offset=0), record(b"{}", None, offset=1), undecodable]
    archive = build(monkeypatch, sink, FakeConsumer(events, {P0: log}))
    await archive.consume_once()
    await archive.stop()
    [(key, body)] = sink.objects
    assert key == name(HOUR_22, 0)
    base = {"topic": "requests", "partition": 0, "timestamp": NOW_MS}
    assert lines(body) == [
        {**base, "offset": 0, "key_b64": "//4=", "raw": "not json"},
        {**base, "offset": 1, "key": None, "value": {}},
        {**base, "offset": 2, "key": None, "undecodable": "fails its CRC check"},
    ]


async def test_a_graceful_stop_stores_what_is_buffered_and_commits_it_before_closing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: Events = []
    sink = RecordingSink(events)
    log = [record(b'{"id": "a"}', b"a", offset=offset) for offset in range(3)]
    archive = build(monkeypatch, sink, FakeConsumer(events, {P0: log}))
    await archive.consume_once()
    assert events == []  # under the size limit and younger than archive_max_age_s
    await archive.stop()
    assert events == [
        ("write", name(HOUR_22, 0)),
        ("commit", {P0: 3}),
        ("consumer stop", None),
        ("sink stop", None),
    ]
    assert offsets(sink.objects[0][1]) == [0, 1, 2]
    assert archive.buffers == {}


async def test_a_stop_whose_last_store_fails_still_closes_both_clients_uncommitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: Events = []
    sink = RecordingSink(events, client_error(503))  # S3 away at shutdown
    archive = build(monkeypatch, sink, FakeConsumer(events, {P0: [record(b"{}", b"a")]}))
    await archive.consume_once()
    with pytest.raises(ClientError):
        await archive.stop()
    # Nothing committed: the next archive reads the record again from the last commit.
    assert events == [("consumer stop", None), ("sink stop", None)]


async def test_a_buffer_older_than_the_age_limit_is_stored_even_with_no_new_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(raw_archive, "time", SimpleNamespace(monotonic=lambda: now[0]))
    events: Events = []
    sink = RecordingSink(events)
    consumer = FakeConsumer(events, {P0: [record(b"{}", b"a", offset=7)]}, committed={P0: 7})
    archive = build(monkeypatch, sink, consumer)
    await archive.consume_once()
    now[0] += archive.settings.archive_max_age_s - 0.5
    await archive.consume_once()
    assert sink.objects == []
    now[0] += 0.5
    await archive.consume_once()
    assert events == [("write", name(HOUR_22, 7)), ("commit", {P0: 8})]


async def test_an_s3_failure_is_reported_drops_the_buffers_rewinds_and_then_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(raw_archive, "RETRY_FIRST_S", 0.01)
    events: Events = []
    # The first object is stored, the second refused (403), stored at the next attempt.
    sink = RecordingSink(events, None, client_error(403))
    logs = {P0: [big(offset) for offset in range(4)], P1: [record(b"{}", b"b", partition=1)]}
    consumer = FakeConsumer(events, logs, fetch_size=2)
    archive = build(monkeypatch, sink, consumer)
    await asyncio.wait_for(archive.run(consumer.idle), 5)
    assert events[:2] == [("write", name(HOUR_22, 0)), ("commit", {P0: 2})]
    # Rewound to the committed offsets: partition 1 never committed reads from its start.
    assert set(events[2:4]) == {("seek", (P0, 2)), ("seek to beginning", P1)}
    assert events[4:] == [("write", name(HOUR_22, 2)), ("commit", {P0: 4})]
    failed = [seen for seen in consumer.degraded_seen if "archive" in seen]
    assert len(failed) == 1
    assert failed[0]["archive"].startswith("ClientError: ") and "403" in failed[0]["archive"]
    assert health.degraded() == {}
    # Partition 1's buffered record was dropped and read again: stored once, not twice.
    await archive.stop()
    assert [offsets(body) for _, body in sink.objects] == [[0, 1], [2, 3], [0]]
    assert events[-3] == ("commit", {P1: 1})


async def test_records_deleted_before_the_archive_read_them_are_counted_per_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: Events = []
    logs = {
        # Committed at 5, but the broker deleted everything below 20.
        P0: [record(b"{}", b"a", offset=offset) for offset in range(20, 23)],
        # Never committed: reading starts at the log start, nothing was expected.
        P1: [record(b"{}", b"b", offset=7, partition=1)],
    }
    consumer = FakeConsumer(events, logs, committed={P0: 5})
    archive = build(monkeypatch, RecordingSink(events), consumer)
    await archive.expect_committed([P0, P1])
    assert archive.expected == {P0: 5}
    await archive.consume_once()
    assert health.skipped() == {"requests (archive)[0]": 15}
    assert archive.expected == {P0: 23, P1: 8}
    # The same gap is not counted twice, and the records after it are archived.
    await archive.consume_once()
    await archive.stop()
    assert health.skipped() == {"requests (archive)[0]": 15}
    assert ("commit", {P0: 23}) in events
