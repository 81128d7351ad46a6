"""The stats agents through Faust's test_context, with topic sends recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

import agents.stats
from agents.stats import count_requests, resends, send_partials, total_stats
from leadedge.app import app, stats_partials_topic, stats_topic
from leadedge.stats_state import UnsentPartials
from tables.request_stats import request_stats, stats_partials
from tests.unit.agents.fixtures import RecordingTopic


@pytest.fixture()
async def sent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, RecordingTopic]]:
    recorded = {"partials": RecordingTopic(), "stats": RecordingTopic()}
    monkeypatch.setattr(stats_partials_topic, "send_soon", recorded["partials"].send_soon)
    monkeypatch.setattr(agents.stats, "unsent", UnsentPartials())
    monkeypatch.setattr(stats_topic, "send", recorded["stats"].send)
    monkeypatch.setattr(resends, "done", set())
    app.finalize()
    app.flow_control.resume()
    yield recorded
    stats_partials.data.clear()
    request_stats.data.clear()


async def test_applied_events_count_and_bad_ones_go_nowhere(
    sent: dict[str, RecordingTopic],
) -> None:
    async with count_requests.test_context() as agent:
        await agent.put(b'{"id":"s1","source":2,"clicks":"+1","impressions":"+5"}', key=b"s1")
        await agent.put(b'{"id":"s1","clicks":"+3"}', key=b"s1")
        await agent.put(b"not json", key=b"s1")  # the merge agent dead-letters it
        await agent.put(b'{"id":"s1","clicks":{"a":1}}', key=b"s1")  # a type conflict
        await agent.put(b'{"id":"s2","source":2,"clicks":"+0.5"}', key=b"s2")
    send_partials()
    last = orjson.loads(sent["partials"].records[-1]["value"])
    assert (last["events"], last["new_requests"]) == (3, 2)
    assert last["counters"] == {"clicks": 4.5, "impressions": 5}
    assert sent["partials"].records[-1]["key"].decode().startswith("default|2|")


async def test_partials_are_held_and_sent_once_per_window_with_the_newest_counts(
    sent: dict[str, RecordingTopic],
) -> None:
    async with count_requests.test_context() as agent:
        for number in range(5):
            value = b'{"id":"h%d","source":"web","clicks":"+1"}' % number
            await agent.put(value, key=b"h%d" % number)
    assert sent["partials"].records == []
    send_partials()
    windows = {record["key"] for record in sent["partials"].records}
    assert len(sent["partials"].records) == len(windows)  # one send per window
    assert sum(orjson.loads(r["value"])["events"] for r in sent["partials"].records) == 5
    send_partials()
    assert len(sent["partials"].records) == len(windows)  # nothing new, nothing sent


async def test_partials_become_totals_published_by_window(
    sent: dict[str, RecordingTopic],
) -> None:
    async with count_requests.test_context() as agent:
        await agent.put(b'{"id":"t1","source":"web","clicks":"+2"}', key=b"t1")
        await agent.put(b'{"id":"t2","source":"web","clicks":"+1"}', key=b"t2")
    send_partials()
    async with total_stats.test_context() as agent:
        for record in sent["partials"].records:
            await agent.put(record["value"], key=record["key"])
        await agent.put(
            sent["partials"].records[0]["value"], key=sent["partials"].records[0]["key"]
        )
    published = sent["stats"].records[-1]
    document = orjson.loads(published["value"])
    assert published["key"].decode() == document["id"]
    assert (document["events"], document["new_requests"], document["counters"]) == (
        2,
        2,
        {"clicks": 3},
    )
    assert document["source"] == "web" and document["project"] == "default"


async def test_an_exception_does_not_escape_the_loop(
    sent: dict[str, RecordingTopic], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    import agents.stats

    original = agents.stats.plan_record
    monkeypatch.setattr(agents.stats, "plan_record", broken)
    async with count_requests.test_context() as agent:
        await agent.put(b'{"id":"x1","source":1}', key=b"x1")
        await agent.put(b'{"id":"x2","source":1}', key=b"x2")
    send_partials()
    assert len(calls) == 2
    assert orjson.loads(sent["partials"].records[-1]["value"])["events"] == 1


def test_the_stats_agents_tables_and_pages_are_registered() -> None:
    app.discover()
    assert {
        "agents.stats.count_requests",
        "agents.stats.total_stats",
        "agents.stats.index_stats",
    } <= set(app.agents)
    assert {"stats_partials", "request_stats"} <= set(app.tables)
    routes = {str(route.resource.canonical) for route in app.web.web_app.router.routes()}
    assert {"/", "/report", "/stats", "/static/chart.umd.min.js"} <= routes
