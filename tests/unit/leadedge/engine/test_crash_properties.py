"""The batch engine through crashes: every result as if each applied event counted once.

The real `MergeStep` and `BatchEngine` (wired as `fakes.build` wires them, with the
default merge rules and no GeoIP database) run over a model of Kafka: a log per
(topic, partition) that `write()` appends to. A crash happens inside one of a flush's
`write()` calls: of each (topic, partition) that call writes, any prefix is kept, and
the flush's later calls write nothing. The crashed process is gone; the next one
rebuilds its table stores from the changelogs (as after an unclean stop) and reads each
source partition from its committed offset: the end of an acknowledged range, or an
older one (Faust commits acknowledged offsets now and then, so a crash can lose the
newest). Flushes are either on demand (the held stats partials sent) or like the
interval's (partials held back for a later send, and lost in a crash after their records'
offsets are committed); each new process is told it reads every partition, so it sends
the partials it keeps again. The last run reads everything and flushes without a crash.

Then, against the references of `test_stats_properties` (each applied event applied
once, in its partition's order):

* the newest `merged_requests` changelog value of each request is the reference state
  (plus the timeline bookkeeping), and the newest `merged-requests` record its merged
  request;
* the timeline (history chunks, the open one in the state) holds each applied event once;
* each window's total, as step 2 folds the partials topic (`merge_partial`), and as the
  sum of the last partial sent per (window, partition), is the reference count.

History chunks are made 2 events long here, so a few events fill them (and delete old
ones) and the flush's first `write()` (the history and partials changelogs) has something
to lose.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast
from unittest import mock

import orjson
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.engine.flush import BatchEngine
from leadedge.engine.kafka_out import KafkaBatchWriter, OutRecord
from leadedge.engine.step import MergeStep
from leadedge.engine.write_back import WriteBackTable
from leadedge.rules import history
from leadedge.rules.enrich import Enricher
from leadedge.rules.history import OPEN, SEQUENCE, SIZE, chunk_key, chunks_to_read, entry
from leadedge.rules.merge import Applied, MergeRules, merge_event, merged_request
from leadedge.rules.models import Event, SourceRecord, State
from leadedge.rules.processing import RecordProcessor
from leadedge.rules.stats_state import flush_records
from leadedge.rules.validate import parse_event
from tests.unit.leadedge.engine.fakes import (
    HISTORY_CHANGELOG,
    MAX_EVENT_BYTES,
    MERGED_CHANGELOG,
    PARTIALS_CHANGELOG,
    REQUESTS,
    TOPICS,
    record,
)
from tests.unit.leadedge.rules.test_stats_properties import (
    EVENT,
    NO_LATENESS,
    PARTITIONS,
    RULES,
    records_of,
    reference,
    results,
)

# History chunks of 2 events, the 2 newest full ones kept: chunks fill, and are
# deleted, within a few events of one request.
CHUNK = 2
HISTORY_LENGTH = 2 * CHUNK
MAX_CRASHES = 5
# Enough events that a crash often cuts a flush holding several windows of one request.
MIN_EVENTS = 10
# Partitions of the topics whose records the key places (merged, partials, dead letters).
KEYED_PARTITIONS = 2
Log = dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]


class Crash(Exception):
    """The process dies in the middle of a `write()`."""


class CrashingKafka:
    """Stands in for `KafkaBatchWriter`: appends to `log`, or crashes part way through.

    With `crash_in` set, the flush's `write()` call of that number (from 0) keeps a drawn
    prefix of each (topic, partition) it writes, independently, then raises `Crash`.
    """

    def __init__(self, log: Log, data: st.DataObject) -> None:
        self.log = log
        self.data = data
        self.crash_in: int | None = None
        self.calls = 0

    async def write(self, records: Iterable[OutRecord]) -> dict[tuple[str, int], int]:
        groups: Log = {}
        for out in records:
            partition = out.partition
            if partition is None:
                partition = zlib.crc32(out.key or b"") % KEYED_PARTITIONS
            groups.setdefault((out.topic, partition), []).append((out.key, out.value))
        crashing = self.calls == self.crash_in
        self.calls += 1
        reached = {}
        for tp, group in groups.items():
            if crashing:
                kept = self.data.draw(st.integers(0, len(group)), label=f"kept of {tp}")
                group = group[:kept]
            written = self.log.setdefault(tp, [])
            written.extend(group)
            reached[tp] = len(written) - 1
        if crashing:
            raise Crash
        return reached


class Partitions:
    """A table's local store, one dict per partition."""

    def __init__(self, data: dict[int, dict[str, Any]]) -> None:
        self.data = data

    def get(self, partition: int, key: str) -> Any:
        return self.data.get(partition, {}).get(key)

    def write(
        self, partition: int, items: Iterable[tuple[str, bytes | None]], changelog_offset: int
    ) -> None:
        stored = self.data.setdefault(partition, {})
        for key, raw in items:
            if raw is None:
                stored.pop(key, None)
            else:
                stored[key] = orjson.loads(raw)


def table_of(log: Log, topic: str) -> dict[int, dict[str, Any]]:
    """A changelog read from the start: the newest value of each key, per partition."""
    table: dict[int, dict[str, Any]] = {}
    for (name, partition), written in sorted(log.items()):
        if name != topic:
            continue
        stored = table.setdefault(partition, {})
        for key, value in written:
            decoded = orjson.loads(key or b"null")
            if value is None:
                stored.pop(decoded, None)
            else:
                stored[decoded] = orjson.loads(value)
    return table


def newest(log: Log, topic: str) -> dict[str, Any]:
    """The newest value of each key of a topic, all partitions together."""
    found: dict[str, Any] = {}
    for partition in table_of(log, topic).values():
        found.update(partition)
    return found


def sent(log: Log, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, partition after partition: a key's records in order."""
    return [out for (name, _), written in sorted(log.items()) if name == topic for out in written]


@dataclass
class Process:
    """One worker process: its engine, and what the engine reported."""

    engine: BatchEngine
    fatal: list[BaseException] = field(default_factory=list)
    # Per source partition, the offset after each acknowledged range, in order.
    acked: dict[int, list[int]] = field(default_factory=lambda: {p: [] for p in range(PARTITIONS)})


def start(log: Log, kafka: CrashingKafka) -> Process:
    """A new process: step and engine as `fakes.build` wires them, stores from `log`."""

    def table(name: str, changelog: str, **options: Any) -> WriteBackTable:
        return WriteBackTable(name, changelog, Partitions(table_of(log, changelog)), **options)

    step = MergeStep(
        RecordProcessor(MergeRules(), Enricher(None), max_event_bytes=MAX_EVENT_BYTES),
        history_length=HISTORY_LENGTH,
        stats_lateness_ms=NO_LATENESS,
        merged=table("merged_requests", MERGED_CHANGELOG),
        history=table("request_history", HISTORY_CHANGELOG),
        partials=table("stats_partials", PARTIALS_CHANGELOG, flush_plan=flush_records),
    )

    async def on_fatal(exc: BaseException) -> None:
        process.fatal.append(exc)

    engine = BatchEngine(
        step,
        kafka=cast(KafkaBatchWriter, kafka),
        elasticsearch=None,
        topics=TOPICS,
        flush_interval_s=60.0,
        max_pending_records=10_000,
        on_fatal=on_fatal,
    )
    process = Process(engine)
    engine.ack = lambda tp, first, last: process.acked[tp.partition].append(last + 1)
    return process


def reference_requests(
    by_partition: dict[int, list[SourceRecord]],
) -> tuple[dict[str, State], dict[str, list[dict[str, Any]]]]:
    """Each request's state and timeline with every applied event applied once, in order."""
    states: dict[str, State] = {}
    timelines: dict[str, list[dict[str, Any]]] = {}
    for records in by_partition.values():
        for rec in records:
            event = parse_event(rec.value, key=rec.key, record_ts_ms=0, max_bytes=65536)
            if not isinstance(event, Event):
                continue
            key = event.key
            outcome = merge_event(states.get(key), event, RULES, (rec.partition, rec.offset))
            if isinstance(outcome, Applied):
                states[key] = outcome.state
                timelines.setdefault(key, []).append(entry(event, rec))
    return states, timelines


async def crash_and_replay(by_partition: dict[int, list[SourceRecord]], data: st.DataObject) -> Log:
    """Runs that each end in a crash during a flush, then one that flushes everything."""
    fetched = {
        p: [
            record(
                rec.value, rec.key, offset=rec.offset, partition=p, timestamp_ms=rec.timestamp_ms
            )
            for rec in by_partition.get(p, [])
        ]
        for p in range(PARTITIONS)
    }
    log: Log = {}
    committed = dict.fromkeys(range(PARTITIONS), 0)
    crashes = data.draw(st.integers(0, MAX_CRASHES), label="crashes")
    for run in range(crashes + 1):
        last_run = run == crashes
        kafka = CrashingKafka(log, data)
        process = start(log, kafka)
        engine, fatal, acked = process.engine, process.fatal, process.acked
        # The consumer tells the engine which partitions it reads (all of them here).
        engine.activate({TP(REQUESTS, p) for p in range(PARTITIONS)})
        position = dict(committed)
        while True:
            left = [p for p in range(PARTITIONS) if position[p] < len(fetched[p])]
            # Mostly feeding: a crash then cuts a flush of many records.
            # An interval flush mostly holds the partials back; any flush may send them.
            choices = ["feed", "feed", "feed", "flush", "interval flush"] if left else []
            if not last_run:
                choices.append("crash")
            if not choices:
                break
            action = data.draw(st.sampled_from(choices), label=f"run {run}")
            if action == "feed":
                p = data.draw(st.sampled_from(left), label="partition")
                size = data.draw(st.integers(1, min(8, len(fetched[p]) - position[p])))
                batch = fetched[p][position[p] : position[p] + size]
                engine.handle(TP(REQUESTS, p), batch[0].offset, batch)
                position[p] += size
            elif action == "flush":
                assert await engine.flush()
            elif action == "interval flush":
                assert await engine.flush(send_partials=False)
            else:
                kafka.crash_in = data.draw(st.integers(0, 1), label="crash in write() call")
                kafka.calls = 0
                flushed = await engine.flush(send_partials=data.draw(st.booleans()))
                # A flush with nothing to deliver writes nothing: the crash comes after it.
                assert (not flushed and len(fatal) == 1) or (flushed and kafka.calls == 0)
                break
        if last_run:
            assert await engine.flush()
            assert engine.all_delivered and not fatal
            assert all(
                (acked[p] or [committed[p]])[-1] == len(fetched[p]) for p in range(PARTITIONS)
            )
            break
        # What Faust committed before the crash: the newest acknowledged offset, or older.
        for p in range(PARTITIONS):
            if acked[p]:
                options = [*reversed(acked[p]), committed[p]]
                committed[p] = data.draw(st.sampled_from(options), label=f"commit of {p}")
    return log


@settings(max_examples=100, deadline=None)
@given(events=st.lists(EVENT, min_size=MIN_EVENTS, max_size=40), data=st.data())
def test_crashes_in_any_flush_leave_every_result_as_if_each_event_applied_once(
    events: list[Any], data: st.DataObject
) -> None:
    by_partition = records_of(events)
    states, timelines = reference_requests(by_partition)
    with mock.patch.object(history, "CHUNK_SIZE", CHUNK):
        log = asyncio.run(crash_and_replay(by_partition, data))
        kept_chunks = {
            request_id: chunks_to_read({SEQUENCE: len(timeline), SIZE: CHUNK}, HISTORY_LENGTH)
            for request_id, timeline in timelines.items()
        }

    # (a) The merged requests: the table's newest states, and what was published last.
    stored = newest(log, MERGED_CHANGELOG)
    bookkeeping = {SEQUENCE, OPEN, SIZE}
    assert {
        request_id: {name: value for name, value in state.items() if name not in bookkeeping}
        for request_id, state in stored.items()
    } == states
    published = {
        (key or b"").decode(): orjson.loads(value or b"null")
        for key, value in sent(log, TOPICS.merged)
    }
    assert published == {request_id: merged_request(state) for request_id, state in states.items()}

    # The timeline: each applied event once, the older ones in chunks past the open one.
    for request_id, timeline in timelines.items():
        state = stored[request_id]
        assert state[SEQUENCE] == len(timeline)
        assert state[OPEN] == timeline[len(timeline) - len(timeline) % CHUNK :]
    assert newest(log, HISTORY_CHANGELOG) == {
        chunk_key(request_id, n): timelines[request_id][n * CHUNK : (n + 1) * CHUNK]
        for request_id, chunks in kept_chunks.items()
        for n in chunks
    }

    # (b) The per-minute totals, as step 2 folds every partial sent, and from the last
    # partial sent for each (window, source partition).
    partials = [orjson.loads(value or b"null") for _, value in sent(log, TOPICS.stats_partials)]
    counts = reference(by_partition)
    assert results(partials) == counts
    last: dict[tuple[Any, ...], dict[str, Any]] = {}
    for partial in partials:
        names = ("project", "source", "start_ms", "partition")
        last[tuple(partial[name] for name in names)] = partial
    assert results(list(last.values())) == counts
