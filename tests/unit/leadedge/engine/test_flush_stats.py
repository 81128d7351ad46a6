"""The flush of the per-minute partial counts: their changelog order and their send interval."""

from __future__ import annotations

import asyncio

from faust.types import TP

from leadedge.rules.stats import WINDOW_MS
from leadedge.rules.stats_state import KEEP_CLOSED_MS, SEP
from tests.unit.leadedge.engine.fakes import (
    NOW_MS,
    PARTIALS_CHANGELOG,
    REQUESTS,
    TOPICS,
    build,
    eventually,
    record,
    records,
)

TP0 = TP(REQUESTS, 0)
TP1 = TP(REQUESTS, 1)


async def test_the_partials_changelog_opens_with_the_clock_and_ends_with_the_deletions() -> None:
    harness = build(stats_lateness_ms=0)
    later = NOW_MS + 2 * WINDOW_MS + KEEP_CLOSED_MS
    assert await harness.run(
        [
            record(b'{"id":"a","source":"web"}', b"a", offset=0),
            record(b'{"id":"b","source":"web"}', b"b", offset=1, timestamp_ms=later),
        ]
    )
    changelog = harness.kafka.changelog(PARTIALS_CHANGELOG)
    order = ["deleted" if value is None else key.split(SEP)[0] for key, value in changelog]
    assert order == ["c", "w", "c", "deleted"]
    (_, opening), *_, (_, final), (deleted, _) = changelog
    # The opening clock has the stream time from before the flush (none yet) and lists
    # every partial stored after it; the expired one was never stored, so it is not listed.
    assert opening["stream_ms"] is None
    assert [key for _, key in opening["open"]] == [key for _, key in final["open"]]
    assert final["stream_ms"] == later
    assert deleted.split(SEP)[0] == "w" and deleted not in harness.partials
    # The expired partial was still sent: its window's total must hold its count.
    assert [partial["events"] for _, partial in harness.kafka.partials()] == [1, 1]
    assert {key.split(SEP)[0] for key in harness.partials} == {"c", "w"}
    assert harness.partials[changelog[0][0]] == final


async def test_a_partitions_opening_clock_keeps_its_stored_stream_time_and_partials() -> None:
    harness = build(stats_lateness_ms=0)
    assert await harness.run([record(b'{"id":"a","source":"web"}', b"a", offset=0)])
    [stored] = [value for key, value in harness.partials.items() if key.startswith("c")]
    later = NOW_MS + 2 * WINDOW_MS + KEEP_CLOSED_MS
    assert await harness.run(
        [record(b'{"id":"b","source":"web"}', b"b", offset=1, timestamp_ms=later)]
    )
    changelog = harness.kafka.changelog(PARTIALS_CHANGELOG)[3:]
    order = ["deleted" if value is None else key.split(SEP)[0] for key, value in changelog]
    assert order == ["c", "w", "c", "deleted"]
    (_, opening), *_, (_, final), (deleted, _) = changelog
    assert opening["stream_ms"] == stored["stream_ms"] == NOW_MS
    # Listed before the flush and after it: a crash anywhere in it resends both.
    assert [key for _, key in opening["open"]] == [deleted, *(key for _, key in final["open"])]
    assert [key for _, key in final["open"]] != [deleted]


async def test_each_windows_newest_partial_goes_to_the_partials_topic_once_per_flush() -> None:
    harness = build()
    assert await harness.run(
        [
            record(b'{"id":"p%d","source":"web","clicks":"+1"}' % n, b"p%d" % n, offset=n)
            for n in range(5)
        ]
    )
    [(window_id, partial)] = harness.kafka.partials()
    assert window_id.startswith("default|web|")
    assert (partial["events"], partial["counters"]) == (5, {"clicks": 5})
    assert harness.kafka.sent(TOPICS.stats_partials)[0].partition is None
    assert await harness.run([record(b"{", b"x", offset=5)])
    assert len(harness.kafka.partials()) == 1  # nothing counted, nothing sent


async def test_interval_flushes_hold_the_partials_until_the_stats_interval() -> None:
    harness = build(flush_interval_s=0.01, stats_send_interval_s=3600)
    running = asyncio.create_task(harness.engine.run())
    try:
        harness.handle(records([b'{"id":"a","source":"web"}'], b"a"))
        await eventually(lambda: harness.acks == [(TP0, 0, 0)])
        harness.handle(records([b'{"id":"b","source":"web"}'], b"b", first_offset=1))
        await eventually(lambda: len(harness.acks) == 2)
        # Stored and acknowledged, and not sent: the newest partial waits for the interval.
        assert len(harness.kafka.changelog(PARTIALS_CHANGELOG)) > 0
        assert harness.kafka.partials() == []
        assert not harness.engine.all_delivered
        # Once the interval has passed, the next flush sends the newest of each window.
        harness.engine.stats_send_interval_s = 0.0
        harness.handle(records([b'{"id":"c","source":"web"}'], b"c", first_offset=2))
        await eventually(lambda: len(harness.kafka.partials()) == 1)
        [(_, partial)] = harness.kafka.partials()
        assert partial["events"] == 3
        await eventually(lambda: harness.engine.all_delivered)
    finally:
        running.cancel()


async def test_a_flush_on_demand_sends_the_held_partials() -> None:
    harness = build(stats_send_interval_s=3600)
    harness.handle(records([b'{"id":"a","source":"web"}'], b"a"))
    assert await harness.engine.flush()
    assert [partial["events"] for _, partial in harness.kafka.partials()] == [1]


async def test_a_partition_read_again_sends_its_kept_partials_at_the_stats_interval() -> None:
    first = build()
    assert await first.run(records([b'{"id":"a","source":"web"}'], b"a"))
    second = build(stores=first.stores, stats_send_interval_s=0.01)
    running = asyncio.create_task(second.engine.run())
    try:
        second.engine.activate({TP0})
        await eventually(lambda: len(second.kafka.partials()) == 1)
        assert second.kafka.partials() == first.kafka.partials()
    finally:
        running.cancel()
