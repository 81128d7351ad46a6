"""The merge rules of DESIGN.md as pure functions: an event in, a new state out.

Nothing here touches Faust, Kafka or the network, so every rule is testable on its own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from leadedge.rules.event_ids import EventIds, json_default
from leadedge.rules.models import Event, Rejection, State

INCREMENT = re.compile(r"^[+-]([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
# Only a string that starts with a sign can be an increment.
SIGNS = ("+", "-")

# Bookkeeping kept beside the merged fields in the table.
CREATED = "_created_ms"
UPDATED = "_updated_ms"
COUNT = "_count"
SOURCE = "_src"
EVENT_IDS = "_event_ids"
# Every name of the state that is not a merged field; the last three are the timeline's
# (leadedge.rules.history.SEQUENCE, OPEN and SIZE).
BOOKKEEPING = (
    CREATED,
    UPDATED,
    COUNT,
    SOURCE,
    EVENT_IDS,
    "_history_seq",
    "_history_open",
    "_history_chunk",
)


@dataclass(frozen=True, slots=True)
class MergeRules:
    """What a deployment chooses: which fields count, how many event ids to remember."""

    counter_fields: frozenset[str] = frozenset()
    max_event_ids: int = 1000

    def allows_increment(self, dotted_name: str) -> bool:
        """Rule 7: with a counter list, only its fields take increments."""
        return not self.counter_fields or dotted_name in self.counter_fields


# Not frozen: one per event (see `leadedge.rules.models.SourceRecord`).
@dataclass(slots=True)
class Applied:
    """The event changed the state."""

    state: State
    # Every increment the event applied, by dotted name: what the stats count.
    increments: dict[str, str]


@dataclass(slots=True)
class Duplicate:
    """The event was applied before (same source offset or same event_id): nothing to do."""

    why: str


MergeOutcome = Applied | Duplicate | Rejection


class _Conflict(Exception):
    """Raised inside a merge to abandon the whole event (rule 5)."""

    reason = "type_conflict"


class _OutOfRange(_Conflict):
    """A sum no output could hold: the whole event is abandoned all the same."""

    reason = "out_of_range"


# Counters are 64-bit signed integers everywhere they go (orjson, Elasticsearch `long`).
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# An increment with up to this many digits is below 2**63 on its own.
SAFE_DIGITS = 18
# Longer increments are refused before any arithmetic on them.
MAX_INCREMENT_LENGTH = 64


def _in_range(result: int, dotted: str) -> int:
    if INT_MIN <= result <= INT_MAX:
        return result
    msg = f"field {dotted!r} would be {result}, outside the 64-bit integer range"
    raise _OutOfRange(msg)


def _add(current: Any, increment: str, dotted: str) -> int | float:
    if current is None:
        current = 0
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        kind = type(current).__name__
        msg = f"increment {increment!r} on field {dotted!r}, which holds a {kind}"
        raise _Conflict(msg)
    if len(increment) > MAX_INCREMENT_LENGTH:
        msg = (
            f"increment on field {dotted!r} has {len(increment)} characters, "
            f"over {MAX_INCREMENT_LENGTH}"
        )
        raise _OutOfRange(msg)
    if isinstance(current, int) and "." not in increment:
        return _in_range(current + int(increment), dotted)
    # Decimal over the shortest repr keeps ten "+0.1" at exactly 1.0.
    result = float(Decimal(repr(current)) + Decimal(increment))
    if not math.isfinite(result):
        msg = f"field {dotted!r} would be {result}, beyond a double"
        raise _OutOfRange(msg)
    return result


def apply_fields(
    current: dict[str, Any],
    fields: dict[str, Any],
    rules: MergeRules,
    path: str = "",
    increments: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Rules 1 to 5 on one level of fields; returns a new dict, `current` is untouched.

    Each increment applied is noted in `increments` by its dotted name, so the stats
    need not walk the event again to find them.
    """
    if increments is None:
        increments = {}
    merged = dict(current)
    counters = rules.counter_fields
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, str):
            # Only a string that starts with a sign can be an increment.
            if value[:1] not in SIGNS or (counters and not rules.allows_increment(path + name)):
                merged[name] = value
                continue
            digits = value[1:]
            if digits.isdigit() and digits.isascii() and len(digits) <= SAFE_DIGITS:
                # "+3": an integer increment, the usual case.
                existing = merged.get(name)
                if existing is None:
                    merged[name] = int(value)
                    increments[path + name] = value
                    continue
                if type(existing) is int:
                    merged[name] = _in_range(existing + int(value), path + name)
                    increments[path + name] = value
                    continue
            elif not INCREMENT.match(value):
                merged[name] = value
                continue
            merged[name] = _add(merged.get(name), value, path + name)
            increments[path + name] = value
        elif isinstance(value, dict):
            existing = merged.get(name, {})
            if not isinstance(existing, dict):
                kind = type(existing).__name__
                msg = f"object sent for field {path + name!r}, which holds a {kind}"
                raise _Conflict(msg)
            merged[name] = apply_fields(existing, value, rules, f"{path}{name}.", increments)
        else:
            merged[name] = value
    return merged


def merge_event(
    state: State | None,
    event: Event,
    rules: MergeRules,
    source: tuple[int, int] | None = None,
) -> MergeOutcome:
    """Apply one event to a request's state, whole or not at all.

    `source` is the event's (partition, offset): an event at or before the last applied
    offset of the same partition is a redelivery and changes nothing. The state keeps
    the last `rules.max_event_ids` event ids in one string: checking and extending them
    is a search and a copy of that string, no walk of its ids (`leadedge.rules.event_ids`).
    """
    event_id = event.event_id
    remembered: EventIds | None = None
    if state is not None:
        last = state.get(SOURCE)
        if (
            source is not None
            and last is not None
            and last[0] == source[0]
            and source[1] <= last[1]
        ):
            return Duplicate(f"offset {source[1]} already applied")
        if event_id is not None:
            remembered = EventIds.of(state.get(EVENT_IDS, ()))
            if event_id in remembered:
                return Duplicate(f"event_id {event_id!r} already applied")
        if state.get("project") != event.project:
            return Rejection(
                "project_mismatch",
                f"request {event.id!r} belongs to another project than {event.project!r}",
            )
    base: State = state if state is not None else {"id": event.id, "project": event.project}
    increments: dict[str, str] = {}
    try:
        merged = apply_fields(base, event.fields, rules, "", increments)
    except _Conflict as exc:
        return Rejection(exc.reason, str(exc))
    ts_ms = event.ts_ms
    merged[CREATED] = min(base.get(CREATED, ts_ms), ts_ms)
    merged[UPDATED] = max(base.get(UPDATED, ts_ms), ts_ms)
    merged[COUNT] = base.get(COUNT, 0) + 1
    if source is not None:
        merged[SOURCE] = [source[0], source[1]]
    if event_id is not None:
        if remembered is None:
            remembered = EventIds.of(base.get(EVENT_IDS, ()))
        merged[EVENT_IDS] = remembered.remembering(event_id, rules.max_event_ids)
    return Applied(merged, increments)


def encode_state(state: State) -> bytes:
    """A state as the table stores it: JSON, its event ids the plain list they stand for."""
    return orjson.dumps(state, default=json_default)


def format_time(epoch_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, as DESIGN's outputs require."""
    # Remembered by millisecond: a request's creation time comes back with each of its
    # events, and an event's time is both its history entry's and the update time.
    found = _FORMATTED.get(epoch_ms)
    if found is None:
        if len(_FORMATTED) >= _FORMATTED_KEPT:
            _FORMATTED.clear()
        found = _FORMATTED[epoch_ms] = f"{_second(epoch_ms // 1000)}{epoch_ms % 1000:03d}Z"
    return found


_FORMATTED: dict[int, str] = {}
_FORMATTED_KEPT = 8192


@lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    # Events arrive roughly in time order, so a few recent seconds cover nearly all calls.
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def merged_request(state: State) -> dict[str, Any]:
    """The user-facing merged request: merged fields, times, count; no bookkeeping."""
    # Events may not send names starting with "_" (leadedge.rules.validate), so the state's
    # only such names are the bookkeeping ones: popped, not every name tested.
    request = state.copy()
    for name in BOOKKEEPING:
        request.pop(name, None)
    request["created_at"] = format_time(state[CREATED])
    request["updated_at"] = format_time(state[UPDATED])
    request["event_count"] = state[COUNT]
    return request
