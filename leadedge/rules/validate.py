"""Turn raw record bytes into an `Event`, or a `Rejection` that says what is wrong.

The HTTP collector and the merge agent both call `parse_event`, so a producer gets the
same verdict whichever way it sends.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import orjson

from leadedge.rules.models import DEFAULT_PROJECT, Event, Rejection

MAX_ID_LENGTH = 256
MAX_EVENT_ID_LENGTH = 256
# Control characters have no place in an id (logs, URLs, document ids), and keeping them
# out keeps a request's key, `{project}\x1f{id}`, unambiguous.
_ID_CONTROL = re.compile("[\x00-\x1f\x7f]")
# Event times an RFC 3339 time with a four-digit year can name, from the epoch on.
LATEST_TS_MS = 253_402_300_799_999
# Elasticsearch's limit on a document `_id`, which a request's key becomes.
MAX_KEY_BYTES = 512
# Tenant names: what a key is issued for and what the collector stamps on each event.
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_DEPTH = 16
# What `leadedge replay` may add to an event without `ts`: `,"ts":` and up to 20 digits.
REPLAYED_TS_BYTES = 32

RESERVED_FIELDS = frozenset({"created_at", "updated_at", "event_count", "geo", "user_agent"})
BOOKKEEPING_FIELDS = frozenset({"id", "ts", "event_id", "project"})


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _json_error(text: str) -> Rejection:
    # orjson refuses NaN and Infinity like any other invalid JSON; say which it was.
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if str(exc) in {"NaN", "Infinity", "-Infinity"}:
            return Rejection("non_finite_number", f"{exc} is not a JSON number")
        return Rejection("not_json", f"value is not valid JSON: {exc}")
    return Rejection("not_json", "value is not valid JSON")


def decode_json(value: bytes | None) -> Any | Rejection:
    """Parse record bytes as JSON, or say why they are not."""
    if value is None:
        return Rejection("empty_value", "the record has no value")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    # orjson checks UTF-8 too: only a value it refuses is decoded again, to say why.
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", f"value is not UTF-8: {exc.reason} at byte {exc.start}")
    return _json_error(text)


# Returned as soon as found: too deep wins over any other problem of the event.
TOO_DEEP = Rejection("too_deep", f"event nests deeper than {MAX_DEPTH} levels")


def _nested_problem(
    container: dict[str, Any] | list[Any], depth: int, path: str | None
) -> Rejection | None:
    """`TOO_DEEP`, else the first name or number inside `container` that may not be sent.

    Too deep: a value inside `container` (itself at `depth`) deeper than MAX_DEPTH. One
    walk for both. Names and numbers are checked under objects only (`path` is the
    dotted name so far, None under an array, where they are not checked); once a problem
    is found, the rest is walked for depth alone.
    """
    if depth >= MAX_DEPTH:
        return TOO_DEEP if len(container) > 0 else None
    problem: Rejection | None = None
    if isinstance(container, dict):
        for name, value in container.items():
            if path is not None and problem is None:
                if name.startswith("_"):
                    problem = Rejection("underscore_field", f"field {path}{name!r} starts with '_'")
                elif isinstance(value, float) and not math.isfinite(value):
                    problem = Rejection("non_finite_number", f"field {path}{name!r} is not finite")
            if isinstance(value, (dict, list)):
                inner = (
                    f"{path}{name}."
                    if path is not None and problem is None and isinstance(value, dict)
                    else None
                )
                found = _nested_problem(value, depth + 1, inner)
                if found is TOO_DEEP:
                    return found
                if problem is None:
                    problem = found
        return problem
    for value in container:
        if isinstance(value, (dict, list)) and _nested_problem(value, depth + 1, None) is TOO_DEEP:
            return TOO_DEEP
    return None


def _top_name_problem(name: str) -> Rejection | None:
    if name.startswith("_"):
        return Rejection("underscore_field", f"field {name!r} starts with '_'")
    if name in RESERVED_FIELDS:
        return Rejection("reserved_field", f"field {name!r} is derived by leadedge")
    return None


def parse_ts(raw: Any) -> int | Rejection:
    """Event time as epoch milliseconds: RFC 3339 string or epoch milliseconds."""
    if isinstance(raw, bool):
        return Rejection("bad_ts", "ts must be an RFC 3339 string or epoch milliseconds")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and math.isfinite(raw):
        return int(raw)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            return Rejection("bad_ts", f"ts {raw!r} is not an RFC 3339 time")
        if parsed.tzinfo is None:
            return Rejection("bad_ts", f"ts {raw!r} has no time zone offset")
        return int(parsed.timestamp() * 1000)
    return Rejection("bad_ts", "ts must be an RFC 3339 string or epoch milliseconds")


def _parse_id(raw: Any) -> str | Rejection:
    if raw is None:
        return Rejection("missing_id", "the event has no 'id'")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return Rejection(
            "id_type", f"'id' must be a string or an integer, not {type(raw).__name__}"
        )
    request_id = str(raw)
    if not request_id:
        return Rejection("empty_id", "'id' is empty")
    if len(request_id) > MAX_ID_LENGTH:
        return Rejection(
            "id_too_long", f"'id' has {len(request_id)} characters, over {MAX_ID_LENGTH}"
        )
    # A printable id has no control character; only the others are searched.
    if not request_id.isprintable() and _ID_CONTROL.search(request_id):
        return Rejection("id_control_char", "'id' contains a control character")
    return request_id


def parse_event(
    value: bytes | None,
    *,
    key: bytes | None,
    record_ts_ms: int,
    max_bytes: int,
    check_key: bool = True,
) -> Event | Rejection:
    """Validate one record; `check_key` is off for HTTP bodies, which carry no key."""
    if value is not None and len(value) > max_bytes:
        return Rejection("too_large", f"event has {len(value)} bytes, over {max_bytes}")
    doc = decode_json(value)
    if isinstance(doc, Rejection):
        return doc
    return event_from_object(doc, key=key, record_ts_ms=record_ts_ms, check_key=check_key)


def event_from_object(
    doc: Any, *, key: bytes | None, record_ts_ms: int, check_key: bool = True
) -> Event | Rejection:
    """Validate an already decoded JSON value as an event."""
    if not isinstance(doc, dict):
        return Rejection("not_object", f"event must be a JSON object, not {type(doc).__name__}")
    request_id = _parse_id(doc.get("id"))
    if isinstance(request_id, Rejection):
        return request_id
    # The id decides the partition, and so which worker owns the merged request: a key
    # that says otherwise would split one request's events across owners.
    if check_key and key != request_id.encode():
        shown = key.decode("utf-8", "replace") if key is not None else None
        return Rejection("key_mismatch", f"record key {shown!r} is not the event id {request_id!r}")
    # One pass over the top level: the fields to merge, the first field that may not be
    # sent, and the depth of every nested value (too deep wins over any other problem).
    fields: dict[str, Any] = {}
    problem: Rejection | None = None
    for name, value in doc.items():
        kind = type(value)
        if kind is str or kind is int:
            # The usual field: nothing nested, nothing to check but its name.
            if name in BOOKKEEPING_FIELDS:
                continue
            fields[name] = value
            if problem is None and (name[:1] == "_" or name in RESERVED_FIELDS):
                problem = _top_name_problem(name)
            continue
        merged = name not in BOOKKEEPING_FIELDS
        nested: Rejection | None = None
        if isinstance(value, (dict, list)):
            # Names inside are checked only where they would be merged and reported.
            checked = merged and problem is None and isinstance(value, dict)
            nested = _nested_problem(value, 2, f"{name}." if checked else None)
            if nested is TOO_DEEP:
                return nested
        if not merged:
            continue
        fields[name] = value
        if problem is None:
            problem = _top_name_problem(name)
            if problem is None:
                if isinstance(value, float) and not math.isfinite(value):
                    problem = Rejection("non_finite_number", f"field {name!r} is not finite")
                else:
                    problem = nested
    if problem:
        return problem
    ts_ms = parse_ts(doc["ts"]) if doc.get("ts") is not None else record_ts_ms
    if isinstance(ts_ms, Rejection):
        return ts_ms
    if not 0 <= ts_ms <= LATEST_TS_MS:
        return Rejection(
            "bad_ts",
            f"event time {ts_ms} ms is outside 1970-01-01 to 9999-12-31 (from "
            f"{'ts' if doc.get('ts') is not None else 'the record timestamp'})",
        )
    project = doc.get("project", DEFAULT_PROJECT)
    if project is not DEFAULT_PROJECT and (
        not isinstance(project, str) or not PROJECT_NAME.fullmatch(project)
    ):
        return Rejection(
            "bad_project",
            "'project' must be 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
        )
    event_id = doc.get("event_id")
    if event_id is not None:
        if isinstance(event_id, bool) or not isinstance(event_id, (str, int)):
            return Rejection("bad_event_id", "'event_id' must be a string or an integer")
        # A request remembers its last event ids: their size bounds its state's.
        if isinstance(event_id, str) and len(event_id) > MAX_EVENT_ID_LENGTH:
            return Rejection(
                "bad_event_id",
                f"'event_id' has {len(event_id)} characters, over {MAX_EVENT_ID_LENGTH}",
            )
    # Only a long id can make a key over the limit (a character takes at most 4 bytes).
    if len(request_id) * 4 + 65 > MAX_KEY_BYTES:
        key_bytes = len(request_id.encode())
        if project != DEFAULT_PROJECT:
            key_bytes += len(project.encode()) + 1
        if key_bytes > MAX_KEY_BYTES:
            return Rejection(
                "id_too_long",
                f"'id' takes {key_bytes} bytes with its project, over {MAX_KEY_BYTES} "
                "(an Elasticsearch document id)",
            )
    return Event(
        id=request_id,
        project=project,
        ts_ms=ts_ms,
        event_id=None if event_id is None else str(event_id),
        fields=fields,
    )
