"""Per-minute reporting aggregates as pure functions: windows, what an event adds, totals.

A window is one minute of event time (the event's `ts`, else its record timestamp) for one
(project, source). It counts the events the merge applied, the requests they created
(an id's first applied event) and the sum of each counter's increments.

Exact under redelivery: only events the merge applies are counted, from the merge's own
verdict, so an event it rejects (type conflict, another project) or skips (redelivery,
repeated event_id) is not counted. A partial remembers the last source offset it counted,
and the engine stores partials before the merged states (`leadedge.engine.flush`): a
record replayed after a crash is either a redelivery to the merge (its partial holds it)
or applied again, and then counted only if its partial does not hold it yet.

Kafka delivers a window's events from every partition, and a Faust table entry lives in
the partition of the record being handled, so counting happens in two steps:

1. per source partition, a *partial* count of each window (`Partial`), which remembers
   the last offset it applied, exactly like the merge's `_src`;
2. per window, the latest partial of each partition (`Total`), re-keyed by window id; a
   partial replaces an older one of the same partition only when its offset is newer.

Partials are full snapshots, so sending one twice changes nothing. Nothing here touches
Faust, Kafka or the network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from leadedge.rules.merge import INCREMENT, SAFE_DIGITS, SIGNS, MergeRules, format_time
from leadedge.rules.models import Event, State

WINDOW_MS = 60_000
SOURCE_FIELD = "source"
NO_SOURCE = "unknown"

# A window's records (each partition's partial, the total, the published document) and
# each partition's list of open windows stay far below Kafka's 1 MB record limit whatever
# the events hold, so no event can make a flush fail for ever: a source label is cut to
# MAX_SOURCE_CHARS (its end replaced by a hash of the whole), a counter name longer than
# MAX_COUNTER_NAME_BYTES is not counted, and a window counts at most MAX_WINDOW_COUNTERS
# names in all (each partition's partial an equal share, see `partial_counter_limit`).
# What is not counted is counted as `counters_dropped`. At most 2,048 names of 128 bytes:
# under 400 KB. A partition keeps at most MAX_OPEN_WINDOWS windows open; the events of
# any further source are counted under OTHER_SOURCES until some close (a source per
# request would otherwise open a window per request).
MAX_SOURCE_CHARS = 128
MAX_OPEN_WINDOWS = 1000
OTHER_SOURCES = "(other sources)"
MAX_COUNTER_NAME_BYTES = 128
MAX_WINDOW_COUNTERS = 2048


def partial_counter_limit(partitions: int) -> int:
    """How many counter names one partition's partial of a window may hold."""
    return max(1, MAX_WINDOW_COUNTERS // max(1, partitions))


def window_start(ts_ms: int) -> int:
    """The start of the minute that holds `ts_ms` (epoch milliseconds, UTC)."""
    return ts_ms - ts_ms % WINDOW_MS


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C").replace("\x1f", "%1F")


class Window(NamedTuple):
    """One minute of one (project, source)."""

    # A named tuple, not a frozen dataclass: one is made per applied event and used as a
    # dict key, and a tuple is built and hashed in C.
    project: str
    source: str
    start_ms: int

    @property
    def id(self) -> str:
        """Stable id: `{project}|{source}|{start}`; the topic key and the document id."""
        return f"{_escape(self.project)}|{_escape(self.source)}|{format_time(self.start_ms)}"


def source_label(value: Any) -> str:
    """The request's `source` as a keyword: `2` and `"2"` are the same source."""
    if value is None:
        return NO_SOURCE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        label = str(value)
    else:
        label = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if len(label) <= MAX_SOURCE_CHARS:
        return label
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{label[: MAX_SOURCE_CHARS - 17]}~{digest}"


def add_numbers(current: int | float, amount: int | float | str) -> int | float:
    """Exact like the merge: integers stay integers, fractions go through Decimal."""
    if type(current) is int and type(amount) is str:
        # "+3" on an integer, the usual case: no Decimal, no repr.
        digits = amount[1:] if amount[:1] in SIGNS else amount
        if digits.isdigit() and digits.isascii() and len(digits) <= SAFE_DIGITS:
            total = current + int(amount)
            return total if -(2**63) <= total < 2**63 else float(total)
    text = amount if isinstance(amount, str) else repr(amount)
    if isinstance(current, int) and not isinstance(amount, float) and "." not in text:
        total = current + int(text)
        # A window's sum beyond 64 bits (no single request's can be) goes on as a double,
        # what the stats index holds counters as anyway.
        return total if -(2**63) <= total < 2**63 else float(total)
    return float(Decimal(repr(current)) + Decimal(text))


def increments(fields: dict[str, Any], rules: MergeRules, path: str = "") -> dict[str, str]:
    """Every counter the event increments, by dotted name, with its increment string."""
    found: dict[str, str] = {}
    counters = rules.counter_fields
    for name, value in fields.items():
        # Exact types: the values come from JSON, and this runs for every applied event.
        kind = type(value)
        if kind is str:
            if value[:1] not in SIGNS:
                continue
            digits = value[1:]
            # "+3": an integer increment, told without the pattern (the usual case).
            if (digits.isdigit() and digits.isascii()) or INCREMENT.match(value):
                dotted = path + name if path else name
                if not counters or dotted in counters:
                    found[dotted] = value
        elif kind is dict:
            found.update(increments(value, rules, f"{path}{name}."))
    return found


# Not frozen: one per applied event (see `leadedge.rules.models.SourceRecord`).
@dataclass(slots=True)
class Counted:
    """What an event the merge applied adds to its window."""

    window: Window
    new_request: bool
    counters: dict[str, str]


def count_applied(
    event: Event,
    state: State,
    created: bool,
    rules: MergeRules,
    applied: dict[str, str] | None = None,
) -> Counted:
    """The window of an event the merge applied, and what it adds there.

    `state` is the request after the event (its `source` names the window) and `created`
    says whether the event created the request. Only applied events are counted, so the
    merge's own verdict decides what counts: a rejected or repeated event never reaches here.
    `applied` is the increments the merge noted as it applied them (the same as
    `increments(event.fields, rules)`, found without a second walk of the event).
    """
    window = Window(event.project, source_label(state.get(SOURCE_FIELD)), window_start(event.ts_ms))
    counters = increments(event.fields, rules) if applied is None else applied
    return Counted(window, created, counters)


def new_partial(window: Window, partition: int) -> State:
    """An empty partial count of `window` from one source partition."""
    return {
        "project": window.project,
        "source": window.source,
        "start_ms": window.start_ms,
        "partition": partition,
        "src": -1,
        "events": 0,
        "new_requests": 0,
        "counters": {},
    }


def count_into(
    partial: State, counted: Counted, offset: int, max_counters: int = MAX_WINDOW_COUNTERS
) -> None:
    """Add the event at `offset` to `partial`, in place (the caller owns this copy).

    A name new to the partial is counted only while it holds fewer than `max_counters`
    names and only when it is at most MAX_COUNTER_NAME_BYTES long; an increment not
    counted adds one to the partial's `counters_dropped`.
    """
    counters = partial["counters"]
    for name, increment in counted.counters.items():
        current = counters.get(name)
        if current is None:
            if len(counters) >= max_counters or len(name.encode()) > MAX_COUNTER_NAME_BYTES:
                partial["counters_dropped"] = partial.get("counters_dropped", 0) + 1
                continue
            current = 0
        counters[name] = add_numbers(current, increment)
    partial["src"] = offset
    partial["events"] += 1
    partial["new_requests"] += int(counted.new_request)


def observed_ms(event_ts_ms: int, record_ts_ms: int) -> int:
    """How far one event moves its partition's clock.

    Capped by the record's own timestamp, so one event with a wrong future `ts` cannot
    make every later event of its partition late.
    """
    return min(event_ts_ms, record_ts_ms)


def is_late(start_ms: int, stream_ms: int | None, lateness_ms: int) -> bool:
    """A window closes `lateness_ms` after its end, by its partition's stream time."""
    return stream_ms is not None and start_ms + WINDOW_MS + lateness_ms <= stream_ms


def merge_partial(total: State | None, partial: State) -> State:
    """The window's total with `partial` in, unless it holds a newer one of its partition."""
    base = total or {
        "project": partial["project"],
        "source": partial["source"],
        "start_ms": partial["start_ms"],
        "partials": {},
    }
    key = str(partial["partition"])
    held = base["partials"].get(key)
    if held is not None and held["src"] >= partial["src"]:
        return base
    kept = {name: partial[name] for name in ("src", "events", "new_requests", "counters")}
    if partial.get("counters_dropped"):
        kept["counters_dropped"] = partial["counters_dropped"]
    return {**base, "partials": {**base["partials"], key: kept}}


def window_document(total: State) -> dict[str, Any]:
    """The window as published: the topic value and the Elasticsearch document."""
    events = new_requests = dropped = 0
    counters: dict[str, int | float] = {}
    for key in sorted(total["partials"], key=int):
        partial = total["partials"][key]
        events += partial["events"]
        new_requests += partial["new_requests"]
        dropped += partial.get("counters_dropped", 0)
        for name, amount in partial["counters"].items():
            counters[name] = add_numbers(counters.get(name, 0), amount)
    start = total["start_ms"]
    window = Window(total["project"], total["source"], start)
    return {
        "id": window.id,
        "@timestamp": format_time(start),
        "window_start": format_time(start),
        "window_end": format_time(start + WINDOW_MS),
        "project": total["project"],
        "source": total["source"],
        "events": events,
        "new_requests": new_requests,
        "counters": counters,
        **({"counters_dropped": dropped} if dropped else {}),
    }
