"""The collector's verdict is the merge agent's, for every event a new request could take."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.engine.app import app, wiring
from leadedge.engine.app import settings as config
from leadedge.exceptions import NotDelivered
from leadedge.rules.enrich import Enricher
from leadedge.rules.history import append, entry
from leadedge.rules.models import Rejection, SourceRecord, request_key
from leadedge.rules.processing import Merged, RecordProcessor
from leadedge.tables.merged_requests import merged_requests
from leadedge.web.requests import CollectorView, HistoryView, RequestView, validate_batch


def test_the_collector_refuses_what_the_merge_would_with_the_same_reason() -> None:
    body = [
        {"id": "ok", "clicks": "+1"},
        {"id": "big", "clicks": "+" + "9" * 70},
        {"id": "sum", "n": "+99999999999999999999"},
        {"id": "when", "ts": 10**17},
        {"id": "e", "event_id": True},
        {"id": "\u00e9" * 256, "x": 1},
        {"id": "ctl\u0007"},
    ]
    accepted, rejected = validate_batch(body, "alpha")
    assert [request_id for request_id, _ in accepted] == ["ok"]
    assert [(r["index"], r["reason"]) for r in rejected] == [
        (1, "out_of_range"),
        (2, "out_of_range"),
        (3, "bad_ts"),
        (4, "bad_event_id"),
        (5, "id_too_long"),
        (6, "id_control_char"),
    ]
    assert all(r["detail"] for r in rejected)


NAMES = ["id", "ts", "event_id", "clicks", "price", "meta", "geo", "_x", "n" * 300, "a.b", ""]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    # What the body's parser gives: larger integers come as floats.
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["+1", "-2.5", "+" + "9" * 30, "+" + "9" * 70, "+.5", "+1e3", "x" * 70_000]),
    st.integers(min_value=-(10**17), max_value=10**17),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
    ),
    max_leaves=8,
)
IDS = st.one_of(
    st.text(min_size=0, max_size=300),
    st.sampled_from(["ok", "ctl\u0007", "\u00e9" * 256, "a|b"]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.none(),
    st.booleans(),
)
FIELDS = ["ts", "event_id", "clicks", "price", "meta"]
EVENTS = st.one_of(
    # Mostly events a new request could take, near the edges of each rule.
    st.fixed_dictionaries(
        {"id": st.text(alphabet="abc-1", min_size=1, max_size=8)},
        optional=dict.fromkeys(FIELDS, VALUES),
    ),
    st.fixed_dictionaries({"id": IDS}, optional=dict.fromkeys(NAMES[1:], VALUES)),
    VALUES,
)


@settings(max_examples=400, deadline=None)
@given(event=EVENTS)
def test_what_the_collector_accepts_the_merge_applies_and_what_it_refuses_the_merge_refuses_alike(
    event: Any,
) -> None:
    accepted, rejected = validate_batch([event], "alpha")
    processor = RecordProcessor(
        wiring.merge_rules, Enricher(None), max_event_bytes=config.max_event_bytes
    )
    if accepted:
        [(request_id, value)] = accepted
        record = SourceRecord("requests", 0, 0, int(time.time() * 1000), request_id.encode(), value)
        outcome = processor.process(record, lambda key: None)
        assert isinstance(outcome, Merged), outcome
    else:
        [refusal] = rejected
        value = orjson.dumps({**event, "project": "alpha"} if isinstance(event, dict) else event)
        key = str(event.get("id")).encode() if isinstance(event, dict) else None
        record = SourceRecord("requests", 0, 0, int(time.time() * 1000), key, value)
        outcome = processor.process(record, lambda key: None)
        assert isinstance(outcome, Rejection), outcome
        assert outcome.reason != "internal_error"
        if outcome.reason != "key_mismatch":  # the key is the collector's own choice
            assert outcome.reason == refusal["reason"], (outcome, refusal)


# The views, called past the gate and the routing (tested in gate/ and test_routing.py).


class Posted:
    """What `CollectorView.post` reads of a request: its headers and body."""

    def __init__(self, body: bytes, content_type: str = "application/json") -> None:
        self.headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        self.body = body

    async def read(self) -> bytes:
        return self.body


class Producer:
    """The collector's producer: delivers, or refuses as Kafka away would."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.delivered: list[tuple[bytes, bytes]] = []

    async def deliver(self, records: list[tuple[bytes, bytes]], timeout_s: float) -> None:
        if self.refuse:
            raise NotDelivered("Kafka did not acknowledge 1 event within 4 s")
        self.delivered.extend(records)


def raw(handler: Any) -> Any:
    """The view's own handler, under its decorators."""
    while hasattr(handler, "__wrapped__"):
        handler = handler.__wrapped__
    return handler


async def post(body: Any, content_type: str = "application/json") -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    view = CollectorView(app, app.web)
    response = await raw(CollectorView.post)(view, Posted(data, content_type), project="alpha")
    return response.status, orjson.loads(response.body), response.headers


async def test_a_post_answers_202_once_kafka_has_every_accepted_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = Producer()
    monkeypatch.setattr(wiring, "collector_producer", producer)
    status, answer, _ = await post([{"id": "a", "clicks": "+1"}, {"clicks": "+1"}])
    assert (status, answer["accepted"]) == (202, 1)
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, "missing_id")]
    [(key, value)] = producer.delivered
    assert key == b"a" and orjson.loads(value) == {"id": "a", "clicks": "+1", "project": "alpha"}


async def test_a_post_kafka_did_not_acknowledge_gets_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wiring, "collector_producer", Producer(refuse=True))
    status, answer, headers = await post({"id": "a"})
    assert status == 503 and headers["Retry-After"]
    assert "retry" in answer["error"] and "acknowledge" in answer["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b'{"id":"a"}', "text/plain", 415, "application/json"),
        (b"{", "application/json", 400, "not JSON"),
        (b"[]", "application/json", 400, "no event"),
        (orjson.dumps([{"id": "a"}] * 501), "application/json", 413, "over 500"),
    ],
)
async def test_a_post_that_cannot_be_read_as_events_gets_a_4xx_saying_why(
    monkeypatch: pytest.MonkeyPatch, body: bytes, content_type: str, status: int, says: str
) -> None:
    producer = Producer()
    monkeypatch.setattr(wiring, "collector_producer", producer)
    answered, answer, _ = await post(body, content_type)
    assert answered == status and says in answer["error"]
    assert producer.delivered == []


@pytest.fixture()
def stored() -> Iterator[dict[str, Any]]:
    """One request of project alpha in the table, merged from three events."""
    processor = RecordProcessor(wiring.merge_rules, Enricher(None), max_event_bytes=65536)
    state = None
    for offset, event in enumerate([{"clicks": "+1"}, {"clicks": "+2"}, {"n": 1}]):
        value = orjson.dumps({"id": "r1", "project": "alpha", **event})
        record = SourceRecord("requests", 0, offset, 1_767_225_600_000, b"r1", value)
        outcome = processor.process(record, lambda key, state=state: state)
        assert isinstance(outcome, Merged)
        state = outcome.state
        # As the engine's step keeps the timeline: the open chunk in the state.
        append(state, entry(outcome.event, record), 1000)
    assert state is not None
    key = request_key("alpha", "r1")
    merged_requests.data[key] = state
    yield state
    merged_requests.data.pop(key, None)


def lookup(path: str, **query: str) -> Any:
    return make_mocked_request("GET", path + ("?" + urlencode(query) if query else ""))


async def test_a_lookup_answers_the_merged_request_of_the_callers_project_only(
    stored: dict[str, Any],
) -> None:
    view = RequestView(app, app.web)
    get = raw(RequestView.get)
    request = lookup("/requests/r1")
    request.match_info["request_id"] = "r1"
    response = await get(view, request, project="alpha")
    assert response.status == 200 and orjson.loads(response.body)["clicks"] == 3
    for project in ("beta", "default"):
        response = await get(view, request, project=project)
        assert response.status == 404 and "r1" in orjson.loads(response.body)["error"]


async def test_a_history_page_lists_the_applied_events_and_refuses_a_bad_parameter(
    stored: dict[str, Any],
) -> None:
    view = HistoryView(app, app.web)
    get = raw(HistoryView.get)
    request = lookup("/requests/r1/history", offset="1", limit="1")
    request.match_info["request_id"] = "r1"
    answer = orjson.loads((await get(view, request, project="alpha")).body)
    assert (answer["id"], answer["total"], answer["dropped"]) == ("r1", 3, 0)
    [second] = answer["events"]
    assert (second["offset"], second["fields"]) == (1, {"clicks": "+2"})
    bad = lookup("/requests/r1/history", limit="\u00b2")
    bad.match_info["request_id"] = "r1"
    response = await get(view, bad, project="alpha")
    assert response.status == 400 and "limit" in orjson.loads(response.body)["error"]
