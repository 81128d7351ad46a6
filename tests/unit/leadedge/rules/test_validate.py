from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.models import Event, Rejection
from leadedge.rules.validate import (
    BOOKKEEPING_FIELDS,
    MAX_DEPTH,
    RESERVED_FIELDS,
    event_from_object,
    parse_event,
)


def parse(value: bytes, key: bytes | None = b"a", **kw: object) -> Event | Rejection:
    return parse_event(value, key=key, record_ts_ms=5, max_bytes=int(kw.get("max_bytes", 4096)))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"clicks": "+1"}', "missing_id"),
        (b'{"id": ""}', "empty_id"),
        (b'{"id": "' + b"x" * 257 + b'"}', "id_too_long"),
        (b'{"id": true}', "id_type"),
        (b'{"id": "a\\u001fb"}', "id_control_char"),
        (b'{"id": "a", "ts": 1e17}', "bad_ts"),
        (b'{"id": "a", "ts": -5}', "bad_ts"),
        (b'{"id": "a", "ts": 9223372036854775807}', "bad_ts"),
        (b'{"id": "a\\nb"}', "id_control_char"),
        (b'{"id": "a", "project": ""}', "bad_project"),
        (b'{"id": "a", "project": "has space"}', "bad_project"),
        (b'{"id": "a", "project": "a\\u001fb"}', "bad_project"),
        (b'{"id": "a", "project": 7}', "bad_project"),
        (b'{"id": "a", "event_id": true}', "bad_event_id"),
        (b'{"id": "a", "event_id": "' + b"e" * 257 + b'"}', "bad_event_id"),
        (b'{"id": 1.5}', "id_type"),
        (b'{"id": {"a": 1}}', "id_type"),
        (b'{"id": "a", "event_count": 3}', "reserved_field"),
        (b'{"id": "a", "_secret": 1}', "underscore_field"),
        (b'{"id": "a", "o": {"_x": 1}}', "underscore_field"),
        (b'{"id": "a", "x": NaN}', "non_finite_number"),
        (b'{"id": "a", "x": Infinity}', "non_finite_number"),
        (b'{"id": "a", "ts": "yesterday"}', "bad_ts"),
        (b'{"id": "b"}', "key_mismatch"),
        (b'{"id": "a", "d": ' + b'{"x": ' * 20 + b"1" + b"}" * 20 + b"}", "too_deep"),
    ],
)
def test_bad_events_get_a_reason_that_names_the_problem(value: bytes, reason: str) -> None:
    result = parse(value)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_an_event_over_the_size_limit_is_refused() -> None:
    result = parse(b'{"id": "a", "pad": "' + b"x" * 300 + b'"}', max_bytes=256)
    assert isinstance(result, Rejection)
    assert result.reason == "too_large"


def test_an_integer_id_becomes_its_decimal_string() -> None:
    result = parse(b'{"id": 42}', key=b"42")
    assert isinstance(result, Event)
    assert result.id == "42"


def test_ts_accepts_rfc3339_and_epoch_ms_and_defaults_to_the_record_time() -> None:
    a = parse(b'{"id": "a", "ts": "2024-01-02T03:04:05.678Z"}')
    b = parse(b'{"id": "a", "ts": 1704164645678}')
    c = parse(b'{"id": "a"}')
    assert isinstance(a, Event) and isinstance(b, Event) and isinstance(c, Event)
    assert a.ts_ms == b.ts_ms == 1704164645678
    assert c.ts_ms == 5


def test_bookkeeping_fields_are_not_merged_and_project_defaults() -> None:
    result = parse(b'{"id": "a", "event_id": 7, "ts": 1, "clicks": "+1"}')
    assert isinstance(result, Event)
    assert result.fields == {"clicks": "+1"}
    assert result.event_id == "7"
    assert result.project == "default"


def test_an_id_whose_document_id_would_pass_512_bytes_is_refused() -> None:
    wide = "\u00e9" * 256  # 256 characters, 512 bytes
    assert isinstance(parse(orjson.dumps({"id": wide}), key=wide.encode()), Event)
    result = parse(orjson.dumps({"id": wide, "project": "p"}), key=wide.encode())
    assert isinstance(result, Rejection) and result.reason == "id_too_long"
    emoji = "\U0001f600" * 200  # 200 characters, 800 bytes
    result = parse(orjson.dumps({"id": emoji}), key=emoji.encode())
    assert isinstance(result, Rejection) and result.reason == "id_too_long"


def test_a_record_timestamp_out_of_range_is_refused_when_the_event_has_no_ts() -> None:
    result = parse_event(b'{"id": "a"}', key=b"a", record_ts_ms=2**62, max_bytes=4096)
    assert isinstance(result, Rejection) and result.reason == "bad_ts"
    assert "record timestamp" in result.detail


def _model_too_deep(container: Any, depth: int) -> bool:
    if depth >= MAX_DEPTH:
        return len(container) > 0
    values = container.values() if isinstance(container, dict) else container
    return any(isinstance(v, (dict, list)) and _model_too_deep(v, depth + 1) for v in values)


def _model_names(fields: dict[str, Any], path: str) -> str | None:
    for name, value in fields.items():
        if name.startswith("_"):
            return "underscore_field"
        if not path and name in RESERVED_FIELDS:
            return "reserved_field"
        if isinstance(value, float) and not math.isfinite(value):
            return "non_finite_number"
        if isinstance(value, dict):
            found = _model_names(value, f"{path}{name}.")
            if found:
                return found
    return None


def model_verdict(doc: dict[str, Any]) -> str | None:
    """The depth and name rules written as two walks: too deep first, then the first name."""
    if any(isinstance(v, (dict, list)) and _model_too_deep(v, 2) for v in doc.values()):
        return "too_deep"
    return _model_names({k: v for k, v in doc.items() if k not in BOOKKEEPING_FIELDS}, "")


_names = st.sampled_from(["a", "b", "_u", "geo", "ts", "project"])
_leaves = st.one_of(st.integers(0, 9), st.text(max_size=2), st.floats(), st.none())
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_names, inner, max_size=2),
    max_leaves=40,
)


def _nest(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = {"a": value}
    return value


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(_names, _values | _values.map(lambda v: _nest(v, 15)), max_size=5))
def test_depth_names_and_numbers_are_judged_as_two_separate_walks_would(
    fields: dict[str, Any],
) -> None:
    # One walk checks depth, names and numbers together; the verdict is the two walks'.
    doc = {**fields, "id": "a"}
    doc.pop("ts", None)
    doc.pop("project", None)
    result = event_from_object(doc, key=b"a", record_ts_ms=5)
    expected = model_verdict(doc)
    assert (result.reason if isinstance(result, Rejection) else None) == expected
