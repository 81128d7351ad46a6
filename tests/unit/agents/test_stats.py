"""Per-minute stats: partials from the batch engine, totals from the stats agents.

Step 1 (the partial counts) runs in the engine's step and is tested there
(`tests/unit/leadedge/engine/test_step.py`); here its partials, as a flush sends them,
go through `total_stats` with Faust's test_context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from faust.exceptions import PartitionsMismatch
from faust.types import EventT

from leadedge import health
from leadedge.agents import stats as stats_agent
from leadedge.agents.stats import documents, total_stats
from leadedge.engine.app import app, stats_topic
from leadedge.rules import stats_state
from leadedge.tables.request_stats import request_stats, stats_partials
from tests.unit.agents.fixtures import RecordingTopic
from tests.unit.leadedge.engine.fakes import FailsOnce, build, record


@pytest.fixture()
async def sent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RecordingTopic]:
    recorded = RecordingTopic()
    monkeypatch.setattr(stats_topic, "send", recorded.send)
    app.finalize()
    app.flow_control.resume()
    yield recorded
    stats_partials.data.clear()
    request_stats.data.clear()


async def partials_of(*values: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """(key, value) of the partials a flush of these `requests` records sends."""
    # Now, not long ago: `total_stats` drops a partial past retention by its record time.
    now_ms = int(time.time() * 1000)
    harness = build()
    assert await harness.run(
        [
            record(value, key, offset=offset, timestamp_ms=now_ms)
            for offset, (key, value) in enumerate(values)
        ]
    )
    return [
        (out.key or b"", out.value or b"") for out in harness.kafka.sent("request-stats-partials")
    ]


async def test_applied_events_are_counted_and_bad_ones_go_nowhere() -> None:
    [(key, value)] = await partials_of(
        (b"s1", b'{"id":"s1","source":2,"clicks":"+1","impressions":"+5"}'),
        (b"s1", b'{"id":"s1","clicks":"+3"}'),
        (b"s1", b"not json"),  # a dead letter
        (b"s1", b'{"id":"s1","clicks":{"a":1}}'),  # a type conflict
        (b"s2", b'{"id":"s2","source":2,"clicks":"+0.5"}'),
    )
    partial = orjson.loads(value)
    assert (partial["events"], partial["new_requests"]) == (3, 2)
    assert partial["counters"] == {"clicks": 4.5, "impressions": 5}
    assert key.decode().startswith("default|2|")


async def test_partials_become_totals_published_by_window(sent: RecordingTopic) -> None:
    partials = await partials_of(
        (b"t1", b'{"id":"t1","source":"web","clicks":"+2"}'),
        (b"t2", b'{"id":"t2","source":"web","clicks":"+1"}'),
    )
    async with total_stats.test_context() as agent:
        for key, value in partials:
            await agent.put(value, key=key)
        await agent.put(partials[0][1], key=partials[0][0])  # a replayed partial
    assert len(sent.records) == 2  # published again, unchanged
    published = sent.records[-1]
    document = orjson.loads(published["value"])
    assert published["key"].decode() == document["id"]
    assert (document["events"], document["new_requests"], document["counters"]) == (
        2,
        2,
        {"clicks": 3},
    )
    assert document["source"] == "web" and document["project"] == "default"


async def test_an_exception_does_not_escape_the_totals_loop(
    sent: RecordingTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = FailsOnce(stats_state.plan_total)
    monkeypatch.setattr("leadedge.agents.stats.plan_total", broken)
    partials = await partials_of((b"x1", b'{"id":"x1","source":1}'))
    async with total_stats.test_context() as agent:
        await agent.put(partials[0][1], key=partials[0][0])
        # Reported as a degraded part of the worker until a partial passes again.
        assert "boom" in health.degraded()["stats-totals"]
        await agent.put(partials[0][1], key=partials[0][0])
    assert "stats-totals" not in health.degraded()
    assert broken.calls == 2
    [published] = sent.records
    assert orjson.loads(published["value"])["events"] == 1


async def test_a_total_whose_write_fails_for_a_while_is_stored_and_published_once_it_passes(
    sent: RecordingTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a worker saw when `request_stats`' changelog was just created: Faust checks the
    # table's partitions against the consumer's metadata, which still had none for it.
    waits: list[float] = []

    async def no_wait(delay: float) -> None:
        waits.append(delay)
        # Degraded while it is retried.
        assert "PartitionsMismatch" in health.degraded()["stats-totals"]

    monkeypatch.setattr(
        "leadedge.agents.stats.TOTAL_BACKOFF",
        dataclasses.replace(stats_agent.TOTAL_BACKOFF, sleep=no_wait),
    )
    failures = iter([PartitionsMismatch("has 0 partitions"), PartitionsMismatch("0")])
    original = stats_agent.apply

    def flaky(table: Any, plan: stats_state.Plan) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        original(table, plan)

    monkeypatch.setattr("leadedge.agents.stats.apply", flaky)
    [(key, value)] = await partials_of((b"y1", b'{"id":"y1","source":1,"clicks":"+2"}'))
    async with total_stats.test_context() as agent:
        await agent.put(value, key=key)
    assert waits == [0.5, 1.0]
    [published] = sent.records
    assert orjson.loads(published["value"])["counters"] == {"clicks": 2}
    assert "stats-totals" not in health.degraded()


async def test_a_total_whose_write_keeps_failing_is_given_up_and_reported(
    sent: RecordingTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def no_wait(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(
        "leadedge.agents.stats.TOTAL_BACKOFF",
        dataclasses.replace(stats_agent.TOTAL_BACKOFF, sleep=no_wait),
    )

    def broken(table: Any, plan: stats_state.Plan) -> None:
        raise PartitionsMismatch("changelog has 4 partitions, source 8")

    monkeypatch.setattr("leadedge.agents.stats.apply", broken)
    [(key, value)] = await partials_of((b"z1", b'{"id":"z1","source":1}'))
    async with total_stats.test_context() as agent:
        await agent.put(value, key=key)
        # The loop goes on, and says why in /health.
        assert "4 partitions" in health.degraded()["stats-totals"]
    assert waits == stats_agent.TOTAL_BACKOFF.delays()
    assert sent.records == []
    health.report_recovered("stats-totals")


def test_the_newest_total_of_each_window_is_indexed_versioned_by_its_event_count() -> None:
    def event(key: bytes | None, value: bytes | None) -> EventT[bytes]:
        return cast(EventT[bytes], SimpleNamespace(message=SimpleNamespace(key=key, value=value)))

    batch = [
        event(b"w1", b'{"id":"w1","events":1}'),
        event(b"w2", b'{"id":"w2","events":4}'),
        event(b"w1", b'{"id":"w1","events":3}'),
        event(b"w3", None),  # a tombstone: nothing to index
        event(b"w4", b"[1]"),  # not a window: reported, the others indexed
        event(b"w5", b'{"id":"w5"}'),
        event(b"\xff", b'{"id":"w6","events":1}'),
    ]
    assert documents(batch) == [
        ("w1", 3, {"id": "w1", "events": 3}),
        ("w2", 4, {"id": "w2", "events": 4}),
    ]
    assert "not a window" in health.degraded()["stats-index"]
    health.report_recovered("stats-index")


def test_the_stats_agents_tables_and_pages_are_registered() -> None:
    app.discover()
    assert {"leadedge.agents.stats.total_stats", "leadedge.agents.stats.index_stats"} <= set(
        app.agents
    )
    assert {"stats_partials", "request_stats"} <= set(app.tables)
    web: Any = app.web
    routes = {str(route.resource.canonical) for route in web.web_app.router.routes()}
    assert {"/", "/report", "/stats", "/static/chart.umd.min.js"} <= routes


async def test_windows_elasticsearch_refuses_are_reported_until_a_batch_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadedge.agents import stats as stats_agents
    from leadedge.agents.stats import index_stats
    from leadedge.sinks.elasticsearch import WriteResult

    outcomes = [RuntimeError("no such index"), WriteResult(rejected=[("w1", "mapping")]), None]
    written: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def write(batch: list[Any]) -> WriteResult:
        written.put_nowait(batch)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome or WriteResult()

    async def start() -> None:
        return None

    monkeypatch.setattr(stats_agents.wiring.stats_sink, "write", write)
    monkeypatch.setattr(stats_agents.wiring.stats_sink, "start", start)
    seen = []
    total = orjson.dumps({"events": 1})
    async with index_stats.test_context() as agent:
        for number in range(3):
            await agent.put(total, key=f"w{number}".encode())
            async with asyncio.timeout(5):
                await written.get()
            await asyncio.sleep(0)  # the agent's loop goes on past the write
            seen.append(dict(health.degraded()))
    assert "no such index" in seen[0]["stats-index"]
    assert "w1" in seen[1]["stats-index"]
    assert "stats-index" not in seen[2]
