"""The merge agent through Faust's test_context, with topic sends recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from agents.merge import merge_requests
from leadedge import metrics
from leadedge.app import app, dlq_topic, merged_topic
from leadedge.history import CHUNK_SIZE, chunk_key, open_entries
from tables.merged_requests import merged_requests
from tables.request_history import request_history
from tests.unit.agents.fixtures import RecordingTopic


@pytest.fixture()
async def sent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, RecordingTopic]]:
    recorded = {"merged": RecordingTopic(), "dlq": RecordingTopic()}
    monkeypatch.setattr(merged_topic, "send", recorded["merged"].send)
    monkeypatch.setattr(dlq_topic, "send", recorded["dlq"].send)
    app.finalize()
    app.flow_control.resume()
    yield recorded
    merged_requests.data.clear()
    request_history.data.clear()


async def test_events_merge_into_the_table_and_the_merged_topic(
    sent: dict[str, RecordingTopic],
) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(b'{"id":"m1","clicks":"+1","price":2.45}', key=b"m1")
        await agent.put(b'{"id":"m1","clicks":"+3"}', key=b"m1")
    assert merged_requests["m1"]["clicks"] == 4
    last = orjson.loads(sent["merged"].records[-1]["value"])
    assert last["clicks"] == 4
    assert last["event_count"] == 2
    assert sent["merged"].records[-1]["key"] == b"m1"
    assert sent["dlq"].records == []


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff", b"x", "not_utf8"),
        (b"{", b"x", "not_json"),
        (b'"text"', b"x", "not_object"),
        (b'{"v":1}', b"x", "missing_id"),
        (b'{"id":""}', b"", "empty_id"),
        (b'{"id":false}', b"x", "id_type"),
        (b'{"id":"x","geo":{}}', b"x", "reserved_field"),
        (b'{"id":"x","_v":1}', b"x", "underscore_field"),
        (b'{"id":"x","v":NaN}', b"x", "non_finite_number"),
        (b'{"id":"y"}', b"x", "key_mismatch"),
        (b'{"id":"' + b"z" * 257 + b'"}', b"z" * 257, "id_too_long"),
        (b'{"id":"x","d":' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}", b"x", "too_deep"),
        (b'{"id":"x","pad":"' + b"p" * 70_000 + b'"}', b"x", "too_large"),
        (b'{"id":"x","ts":"soon"}', b"x", "bad_ts"),
        (b'{"id":"x","project":""}', b"x", "bad_project"),
        (b'{"id":"x","event_id":[1]}', b"x", "bad_event_id"),
        (b"", b"x", "not_json"),
    ],
)
async def test_every_bad_event_goes_to_the_dead_letter_topic_with_its_bytes_and_reason(
    sent: dict[str, RecordingTopic], value: bytes, key: bytes, reason: str
) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(value, key=key)
        await agent.put(b'{"id":"ok","n":"+1"}', key=b"ok")  # the agent keeps going
    [dead] = sent["dlq"].records
    assert dead["key"] == key
    assert dead["value"] == value
    headers = dict(dead["headers"])
    assert headers["leadedge.error.reason"] == reason.encode()
    assert {
        "leadedge.error.topic",
        "leadedge.error.partition",
        "leadedge.error.offset",
        "leadedge.error.time",
    } <= headers.keys()
    assert merged_requests["ok"]["n"] == 1


async def test_an_object_sent_onto_a_scalar_is_a_type_conflict(
    sent: dict[str, RecordingTopic],
) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(b'{"id":"s","a":1}', key=b"s")
        await agent.put(b'{"id":"s","a":{"b":1}}', key=b"s")
    assert merged_requests["s"]["a"] == 1
    [dead] = sent["dlq"].records
    assert dict(dead["headers"])["leadedge.error.reason"] == b"type_conflict"


async def test_another_project_cannot_touch_a_request(sent: dict[str, RecordingTopic]) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(b'{"id":"p","project":"a","n":"+1"}', key=b"p")
        await agent.put(b'{"id":"p","project":"b","n":"+1"}', key=b"p")
    assert merged_requests["p"]["n"] == 1
    [dead] = sent["dlq"].records
    assert dict(dead["headers"])["leadedge.error.reason"] == b"project_mismatch"


async def test_a_type_conflict_rejects_the_whole_event(sent: dict[str, RecordingTopic]) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(b'{"id":"t","a":"text","b":1}', key=b"t")
        await agent.put(b'{"id":"t","b":"+1","a":"+1"}', key=b"t")
    assert merged_requests["t"]["b"] == 1
    [dead] = sent["dlq"].records
    assert dict(dead["headers"])["leadedge.error.reason"] == b"type_conflict"


def test_every_agent_and_table_is_registered() -> None:
    app.discover()
    assert {"agents.merge.merge_requests", "agents.index.index_requests"} <= set(app.agents)
    assert {"merged_requests", "request_history"} <= set(app.tables)
    paths = (
        {view.view_path for view in app.web.views.values()} if hasattr(app.web, "views") else set()
    )
    routes = {str(route.resource.canonical) for route in app.web.web_app.router.routes()} | paths
    for path in (
        "/requests",
        "/requests/{request_id}",
        "/requests/{request_id}/history",
        "/health",
        "/metrics",
        "/openapi.json",
    ):
        assert path in routes, path


async def test_applied_events_are_kept_in_the_history_in_order(
    sent: dict[str, RecordingTopic],
) -> None:
    async with merge_requests.test_context() as agent:
        await agent.put(b'{"id":"h","clicks":"+1","event_id":"e1"}', key=b"h")
        await agent.put(b'{"id":"h","clicks":"+1","event_id":"e1"}', key=b"h")  # a resend
        await agent.put(b'{"id":"h","clicks":"+2"}', key=b"h")
    events = open_entries(merged_requests["h"])
    assert [e["fields"] for e in events] == [{"clicks": "+1"}, {"clicks": "+2"}]
    assert events[0]["event_id"] == "e1"
    assert merged_requests["h"]["clicks"] == 3


async def test_a_full_history_chunk_moves_to_the_history_table(
    sent: dict[str, RecordingTopic],
) -> None:
    async with merge_requests.test_context() as agent:
        for number in range(CHUNK_SIZE + 1):
            await agent.put(b'{"id":"c","n":"+1","i":%d}' % number, key=b"c")
    stored = request_history[chunk_key("c", 0)]
    assert [e["fields"]["i"] for e in stored] == list(range(CHUNK_SIZE))
    assert [e["fields"]["i"] for e in open_entries(merged_requests["c"])] == [CHUNK_SIZE]


async def test_dead_letters_are_counted_by_reason(sent: dict[str, RecordingTopic]) -> None:
    counter = metrics.dead_letters_total.labels("not_object")
    before = counter._value.get()
    async with merge_requests.test_context() as agent:
        await agent.put(b"[1]", key=b"x")
        await agent.put(b"[2]", key=b"x")
    assert counter._value.get() == before + 2
    assert 'leadedge_dead_letters_total{reason="not_object"}' in metrics.exposition().decode()
