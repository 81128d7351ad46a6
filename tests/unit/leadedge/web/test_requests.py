"""The collector's verdict is the merge agent's, for every event a new request could take."""

from __future__ import annotations

import time
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.engine.app import settings as config
from leadedge.engine.app import wiring
from leadedge.rules.enrich import Enricher
from leadedge.rules.models import Rejection, SourceRecord
from leadedge.rules.processing import Merged, RecordProcessor
from leadedge.web.requests import validate_batch


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
    st.integers(),
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
