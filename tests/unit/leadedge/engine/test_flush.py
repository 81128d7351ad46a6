"""The flush: every changed key written once, stores and offsets only after Kafka has it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.types import TP

from leadedge import metrics
from leadedge.rules.history import CHUNK_SIZE, chunk_key
from leadedge.rules.merge import merged_request
from tests.unit.leadedge.engine.fakes import (
    HISTORY_CHANGELOG,
    MERGED_CHANGELOG,
    PARTIALS_CHANGELOG,
    REQUESTS,
    RecordingElasticsearch,
    build,
    eventually,
    headers,
    key_of,
    record,
    records,
)

TP0 = TP(REQUESTS, 0)
TP1 = TP(REQUESTS, 1)


async def test_nothing_is_stored_or_acknowledged_until_the_flush_then_all_of_it_is() -> None:
    harness = build()
    harness.handle(records([b'{"id":"a","n":"+1"}', b'{"id":"a","n":"+2"}'], b"a"))
    assert harness.merged == {}
    assert harness.acks == []
    assert harness.kafka.writes == []
    assert await harness.engine.flush()
    assert harness.merged["a"]["n"] == 3
    [(key, value)] = harness.kafka.changelog(MERGED_CHANGELOG)
    assert (key, value) == ("a", harness.merged["a"])
    assert harness.kafka.sent(MERGED_CHANGELOG)[0].key == key_of("a") == b'"a"'
    assert harness.kafka.sent(MERGED_CHANGELOG)[0].partition == 0
    assert harness.acks == [(TP0, 0, 1)]


async def test_the_store_is_written_only_once_kafka_has_acknowledged_the_changelog() -> None:
    harness = build()
    harness.kafka.gate = asyncio.Event()
    harness.handle(records([b'{"id":"a","n":"+1"}'], b"a"))
    flushing = asyncio.create_task(harness.engine.flush())
    await asyncio.sleep(0.01)
    assert harness.merged == {} and harness.acks == []
    assert harness.step.merged.get(0, "a")["n"] == 1  # readable while it is being flushed
    harness.kafka.gate.set()
    assert await flushing
    assert harness.merged["a"]["n"] == 1
    assert harness.acks == [(TP0, 0, 0)]


async def test_the_acknowledged_range_spans_every_fetch_from_where_the_consumer_started() -> None:
    harness = build()
    # Offsets 3 and 4 were compacted away: acknowledged with the records after them.
    harness.handle(records([b'{"id":"a"}', b'{"id":"a"}'], b"a", first_offset=5), first=3)
    harness.handle(records([b'{"id":"a"}'], b"a", first_offset=7))
    harness.handle(records([b'{"id":"b"}'], b"b", first_offset=0, partition=1))
    assert await harness.engine.flush()
    assert sorted(harness.acks) == [(TP0, 3, 7), (TP1, 0, 0)]
    harness.handle(records([b'{"id":"a"}'], b"a", first_offset=8))
    assert await harness.engine.flush()
    assert harness.acks[-1] == (TP0, 8, 8)


async def test_each_changed_request_is_written_once_per_flush_with_its_newest_state() -> None:
    es = RecordingElasticsearch()
    harness = build(elasticsearch=es)
    harness.handle(records([b'{"id":"a","n":"+1"}'] * 3, b"a"))
    assert await harness.engine.flush()
    assert [key for key, _ in harness.kafka.changelog(MERGED_CHANGELOG)] == ["a"]
    [(key, published)] = harness.kafka.published()
    assert key == b"a"
    assert published == merged_request(harness.merged["a"])
    assert (published["n"], published["event_count"]) == (3, 3)
    assert es.documents == [("a", 3, published)]


async def test_a_redelivered_record_publishes_the_current_state_again_without_a_changelog() -> None:
    es = RecordingElasticsearch()
    harness = build(elasticsearch=es)
    assert await harness.run(records([b'{"id":"a","n":"+1"}'], b"a"))
    stored = dict(harness.merged["a"])
    changelog_before = len(harness.kafka.changelog(MERGED_CHANGELOG))
    # Read again after a crash that lost the outputs but kept the changelog.
    assert await harness.run(records([b'{"id":"a","n":"+1"}'], b"a"))
    assert len(harness.kafka.changelog(MERGED_CHANGELOG)) == changelog_before
    assert harness.merged["a"] == stored
    assert [request["n"] for _, request in harness.kafka.published()] == [1, 1]
    assert [version for _, version, _ in es.documents] == [1, 1]
    assert harness.acks == [(TP0, 0, 0), (TP0, 0, 0)]


async def test_a_dead_letter_keeps_the_original_bytes_and_says_why_and_where_from() -> None:
    harness = build()
    assert await harness.run(records([b"{", b'{"id":"x"}'], b"x", first_offset=41, partition=0))
    [dead] = harness.kafka.dead_letters()
    assert (dead.key, dead.value, dead.partition) == (b"x", b"{", None)
    found = headers(dead)
    assert found["leadedge.error.reason"] == b"not_json"
    assert found["leadedge.error.topic"] == REQUESTS.encode()
    assert found["leadedge.error.partition"] == b"0"
    assert found["leadedge.error.offset"] == b"41"
    assert found["leadedge.error.detail"]
    assert found["leadedge.error.time"].endswith(b"Z")
    assert "x" in harness.merged


async def test_a_record_without_a_value_is_a_dead_letter_with_empty_bytes() -> None:
    harness = build()
    assert await harness.run([record(None, b"x")])
    [dead] = harness.kafka.dead_letters()
    assert dead.value == b""
    assert headers(dead)["leadedge.error.reason"] == b"empty_value"


async def test_a_failed_kafka_write_stops_the_worker_and_acknowledges_nothing() -> None:
    harness = build(max_pending_records=1)
    failure = KafkaError("broker refused")
    harness.kafka.fail = failure
    harness.handle(records([b'{"id":"a"}'], b"a"))
    assert not await harness.engine.flush()
    assert harness.fatal == [failure]
    assert harness.acks == []
    assert harness.merged == {}
    assert not harness.engine.all_delivered
    # Nothing more is flushed, and intake is not held: the worker is stopping.
    harness.kafka.fail = None
    harness.handle(records([b'{"id":"b"}'], b"b", first_offset=1))
    assert not await harness.engine.flush()
    await asyncio.wait_for(harness.engine.wait_for_room(), 1)
    assert harness.acks == [] and harness.fatal == [failure]


async def test_a_failed_elasticsearch_write_stops_the_worker_and_acknowledges_nothing() -> None:
    es = RecordingElasticsearch()
    failure = RuntimeError("cluster gone")

    async def refuse(documents: Any) -> Any:
        raise failure

    es.write = refuse  # type: ignore[method-assign]
    harness = build(elasticsearch=es)
    assert not await harness.run(records([b'{"id":"a"}'], b"a"))
    assert harness.fatal == [failure]
    assert harness.acks == [] and harness.merged == {}


async def test_history_chunks_reach_kafka_in_a_write_before_the_states_without_them() -> None:
    harness = build()
    values = [b'{"id":"h","i":%d}' % number for number in range(CHUNK_SIZE)]
    assert await harness.run(records(values, b"h"))

    def first_write_with(topic: str) -> int:
        return next(
            n
            for n, batch in enumerate(harness.kafka.writes)
            if any(out.topic == topic for out in batch)
        )

    assert first_write_with(HISTORY_CHANGELOG) < first_write_with(MERGED_CHANGELOG)
    # The partials too: a stored state means its events are counted.
    assert first_write_with(PARTIALS_CHANGELOG) == first_write_with(HISTORY_CHANGELOG)
    [(key, entries)] = harness.kafka.changelog(HISTORY_CHANGELOG)
    assert key == chunk_key("h", 0)
    assert [entry["fields"]["i"] for entry in entries] == list(range(CHUNK_SIZE))
    assert harness.history[chunk_key("h", 0)] == entries


async def test_intake_waits_for_a_flush_once_the_unflushed_records_reach_the_bound() -> None:
    harness = build(max_pending_records=2)
    harness.handle(records([b'{"id":"a"}'], b"a"))
    await asyncio.wait_for(harness.engine.wait_for_room(), 1)  # below the bound
    harness.handle(records([b'{"id":"a"}'], b"a", first_offset=1))
    waiting = asyncio.create_task(harness.engine.wait_for_room())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    assert await harness.engine.flush()
    await asyncio.wait_for(waiting, 1)
    assert harness.acks == [(TP0, 0, 1)]


async def test_records_applied_during_a_flush_are_stored_and_acknowledged_by_the_next() -> None:
    harness = build()
    harness.kafka.gate = asyncio.Event()
    harness.handle(records([b'{"id":"a","n":"+1"}'], b"a"))
    first = asyncio.create_task(harness.engine.flush())
    await asyncio.sleep(0.01)
    harness.handle(records([b'{"id":"a","n":"+1"}'], b"a", first_offset=1))
    harness.kafka.gate.set()
    assert await first
    assert harness.acks == [(TP0, 0, 0)]
    assert harness.merged["a"]["n"] == 1
    # The first flush published the state its changelog holds, not the newer one.
    assert [request["n"] for _, request in harness.kafka.published()] == [1]
    assert await harness.engine.flush()
    assert harness.acks == [(TP0, 0, 0), (TP0, 1, 1)]
    assert [value["n"] for _, value in harness.kafka.changelog(MERGED_CHANGELOG)] == [1, 2]
    assert [request["n"] for _, request in harness.kafka.published()] == [1, 2]
    assert harness.merged["a"]["n"] == 2
    assert harness.engine.all_delivered


async def test_a_flush_with_nothing_applied_writes_nothing() -> None:
    harness = build()
    assert await harness.engine.flush()
    assert harness.kafka.writes == [] and harness.acks == []
    assert harness.engine.all_delivered


async def test_revoked_partitions_are_neither_published_nor_acknowledged() -> None:
    harness = build()
    harness.handle(records([b'{"id":"a"}', b"{"], b"a", partition=0))
    harness.handle(records([b'{"id":"b"}'], b"b", partition=1))
    harness.engine.drop({TP0})
    assert await harness.engine.flush()
    assert harness.acks == [(TP1, 0, 0)]
    assert [key for key, _ in harness.kafka.published()] == [b"b"]
    assert harness.kafka.dead_letters() == []
    assert set(harness.merged) == {"b"}


async def test_revoked_records_no_longer_count_and_intake_waiting_for_room_wakes() -> None:
    harness = build(max_pending_records=3)
    harness.handle(records([b'{"id":"a"}', b'{"id":"a"}'], b"a", partition=0))
    harness.handle(records([b'{"id":"b"}'], b"b", partition=1))
    assert harness.engine.offsets == {TP0: [0, 1, 2], TP1: [0, 0, 1]}
    waiting = asyncio.create_task(harness.engine.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    harness.engine.drop({TP0})
    await asyncio.wait_for(waiting, 1)
    assert harness.engine.pending_records == 1
    assert harness.engine.offsets == {TP1: [0, 0, 1]}
    harness.engine.drop({TP1})
    assert harness.engine.pending_records == 0
    assert harness.engine.first_pending_at is None
    assert harness.engine.all_delivered


async def test_a_flush_with_nothing_to_deliver_still_wakes_whoever_waits_for_one() -> None:
    harness = build()
    harness.engine._flushed.clear()
    waiting = asyncio.create_task(harness.engine._flushed.wait())
    assert await harness.engine.flush()
    await asyncio.wait_for(waiting, 1)


async def test_a_document_elasticsearch_refuses_becomes_a_dead_letter_and_stays_stored() -> None:
    es = RecordingElasticsearch(refuse={"bad"})
    harness = build(elasticsearch=es)
    assert await harness.run(
        [record(b'{"id":"ok"}', b"ok", offset=3), record(b'{"id":"bad","n":1}', b"bad", offset=4)]
    )
    [dead] = harness.kafka.dead_letters()
    assert dead.key == b"bad"
    assert orjson.loads(dead.value or b"") == merged_request(harness.merged["bad"])
    found = headers(dead)
    assert found["leadedge.error.reason"] == b"elasticsearch_rejected"
    assert (found["leadedge.error.partition"], found["leadedge.error.offset"]) == (b"0", b"4")
    assert {"ok", "bad"} <= set(harness.merged)
    assert harness.acks == [(TP0, 3, 4)]


async def test_without_elasticsearch_states_still_go_to_the_merged_topic() -> None:
    harness = build(elasticsearch=None)
    assert await harness.run(records([b'{"id":"a"}'], b"a"))
    assert [key for key, _ in harness.kafka.published()] == [b"a"]


async def test_the_engine_flushes_on_its_interval() -> None:
    harness = build(flush_interval_s=0.02)
    running = asyncio.create_task(harness.engine.run())
    try:
        harness.handle(records([b'{"id":"a"}'], b"a"))
        await eventually(lambda: harness.acks == [(TP0, 0, 0)])
        harness.handle(records([b'{"id":"a"}'], b"a", first_offset=1))
        await eventually(lambda: harness.acks == [(TP0, 0, 0), (TP0, 1, 1)])
    finally:
        running.cancel()


async def test_the_engine_flushes_at_once_when_the_records_reach_the_bound() -> None:
    harness = build(flush_interval_s=3600, max_pending_records=2)
    running = asyncio.create_task(harness.engine.run())
    try:
        harness.handle(records([b'{"id":"a"}'], b"a"))
        await asyncio.sleep(0.02)
        assert harness.acks == []
        harness.handle(records([b'{"id":"a"}'], b"a", first_offset=1))
        await eventually(lambda: harness.acks == [(TP0, 0, 1)])
    finally:
        running.cancel()


async def test_outcomes_are_counted_once_the_flush_is_done() -> None:
    merged = metrics.events_total.labels("merged")
    dead = metrics.events_total.labels("dead_letter")
    before = (merged._value.get(), dead._value.get())
    harness = build()
    harness.handle([record(b'{"id":"a"}', b"a", offset=0), record(b"[1]", b"a", offset=1)])
    assert (merged._value.get(), dead._value.get()) == before
    assert await harness.engine.flush()
    assert (merged._value.get(), dead._value.get()) == (before[0] + 1, before[1] + 1)
