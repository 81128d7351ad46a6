"""The merge rules of DESIGN.md as pure functions: an event in, a new state out.

Nothing here touches Faust, Kafka or the network, so every rule is testable on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from leadedge.models import Event, Rejection, State

INCREMENT = re.compile(r"^[+-]([0-9]+(\.[0-9]*)?|\.[0-9]+)$")

# Bookkeeping kept beside the merged fields in the table.
CREATED = "_created_ms"
UPDATED = "_updated_ms"
COUNT = "_count"
SOURCE = "_src"
EVENT_IDS = "_event_ids"


@dataclass(frozen=True, slots=True)
class MergeRules:
    """What a deployment chooses: which fields count, how many event ids to remember."""

    counter_fields: frozenset[str] = frozenset()
    max_event_ids: int = 1000

    def allows_increment(self, dotted_name: str) -> bool:
        """Rule 7: with a counter list, only its fields take increments."""
        return not self.counter_fields or dotted_name in self.counter_fields


@dataclass(frozen=True, slots=True)
class Applied:
    """The event changed the state."""

    state: State


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The event was applied before (same source offset or same event_id): nothing to do."""

    why: str


MergeOutcome = Applied | Duplicate | Rejection


class _Conflict(Exception):
    """Raised inside a merge to abandon the whole event (rule 5)."""


def _add(current: Any, increment: str, dotted: str) -> int | float:
    if current is None:
        current = 0
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        kind = type(current).__name__
        msg = f"increment {increment!r} on field {dotted!r}, which holds a {kind}"
        raise _Conflict(msg)
    if isinstance(current, int) and "." not in increment:
        return current + int(increment)
    # Decimal over the shortest repr keeps ten "+0.1" at exactly 1.0.
    return float(Decimal(repr(current)) + Decimal(increment))


def apply_fields(
    current: dict[str, Any], fields: dict[str, Any], rules: MergeRules, path: str = ""
) -> dict[str, Any]:
    """Rules 1 to 5 on one level of fields; returns a new dict, `current` is untouched."""
    merged = dict(current)
    for name, value in fields.items():
        dotted = f"{path}{name}"
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, dict):
            existing = merged.get(name, {})
            if not isinstance(existing, dict):
                kind = type(existing).__name__
                msg = f"object sent for field {dotted!r}, which holds a {kind}"
                raise _Conflict(msg)
            merged[name] = apply_fields(existing, value, rules, f"{dotted}.")
        elif isinstance(value, str) and INCREMENT.match(value) and rules.allows_increment(dotted):
            merged[name] = _add(merged.get(name), value, dotted)
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
    offset of the same partition is a redelivery and changes nothing.
    """
    if state is not None:
        last = state.get(SOURCE)
        if (
            source is not None
            and last is not None
            and last[0] == source[0]
            and source[1] <= last[1]
        ):
            return Duplicate(f"offset {source[1]} already applied")
        if event.event_id is not None and event.event_id in state.get(EVENT_IDS, ()):
            return Duplicate(f"event_id {event.event_id!r} already applied")
        if state.get("project") != event.project:
            return Rejection(
                "project_mismatch",
                f"request {event.id!r} belongs to another project than {event.project!r}",
            )
    base: State = state if state is not None else {"id": event.id, "project": event.project}
    try:
        merged = apply_fields(base, event.fields, rules)
    except _Conflict as exc:
        return Rejection("type_conflict", str(exc))
    merged[CREATED] = min(base.get(CREATED, event.ts_ms), event.ts_ms)
    merged[UPDATED] = max(base.get(UPDATED, event.ts_ms), event.ts_ms)
    merged[COUNT] = base.get(COUNT, 0) + 1
    if source is not None:
        merged[SOURCE] = [source[0], source[1]]
    if event.event_id is not None:
        seen = [*base.get(EVENT_IDS, ()), event.event_id]
        merged[EVENT_IDS] = seen[-rules.max_event_ids :]
    return Applied(merged)


def format_time(epoch_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, as DESIGN's outputs require."""
    return f"{_second(epoch_ms // 1000)}{epoch_ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    # Events arrive roughly in time order, so a few recent seconds cover nearly all calls.
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def merged_request(state: State) -> dict[str, Any]:
    """The user-facing merged request: merged fields, times, count; no bookkeeping."""
    request = {name: value for name, value in state.items() if not name.startswith("_")}
    request["created_at"] = format_time(state[CREATED])
    request["updated_at"] = format_time(state[UPDATED])
    request["event_count"] = state[COUNT]
    return request
