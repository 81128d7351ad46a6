"""A seeded stream of request histories with bad and resent events, and its reference merge."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
import orjson

from leadedge.rules.enrich import Enricher
from leadedge.rules.merge import Applied, MergeRules, merge_event, merged_request
from leadedge.rules.models import Event, State
from leadedge.rules.stats import Window, add_numbers, source_label, window_start
from leadedge.rules.validate import event_from_object
from leadedge.tools.demo import ADDRESSES, CHROME, FIREFOX, SAFARI

BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class History:
    """Records to produce, in order, and what leadedge must make of them."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    bad_indexes: set[int] = field(default_factory=set)


def generate(
    ids: int, events: int, seed: int = 11, step_ms: int = 1, start_ms: int = BASE_TS
) -> History:
    """`events` records over `ids` requests, the n-th at event time `start_ms + n * step_ms`."""
    rng = random.Random(seed)
    history = History()
    started: set[str] = set()
    sent_with_event_id: list[tuple[bytes, bytes]] = []
    for n in range(events):
        request_id = f"r{rng.randrange(ids):05d}"
        key = request_id.encode()
        ts = start_ms + n * step_ms
        roll = rng.random()
        if request_id not in started:
            started.add(request_id)
            doc: dict[str, Any] = {
                "id": request_id,
                "ts": ts,
                "source": rng.randrange(1, 5),
                "ipaddress": rng.choice(ADDRESSES),
                "useragent": rng.choice((CHROME, SAFARI, FIREFOX)),
                "domain": "somewhere.net",
                "clicks": "+1",
                "impressions": "+2",
                "price": 2.45,
            }
        elif roll < 0.03:
            history.bad_indexes.add(len(history.records))
            history.records.append((key, rng.choice([b"{not json", b"[1,2]", b'{"clicks":"+1"}'])))
            continue
        elif roll < 0.05:
            # A type conflict: `domain` holds a string.
            history.bad_indexes.add(len(history.records))
            doc = {"id": request_id, "ts": ts, "domain": "+1", "clicks": "+1"}
        elif roll < 0.09 and sent_with_event_id:
            # A client retry: the very same event again, to be counted once.
            history.records.append(rng.choice(sent_with_event_id))
            continue
        else:
            doc = {
                "id": request_id,
                "ts": ts,
                "clicks": f"+{rng.randrange(0, 4)}",
                "amount": "+0.1",
                "event_id": f"e{n}",
            }
            if rng.random() < 0.05:
                doc["ipaddress"] = rng.choice(ADDRESSES)
        record = (key, orjson.dumps(doc))
        if "event_id" in doc:
            sent_with_event_id.append(record)
        history.records.append(record)
    return history


def applied_events(
    history: History, settle: Callable[[State | None, State], State] | None = None
) -> list[tuple[Event, State | None, State]]:
    """Each event the merge applies, exactly once, in order: (event, state before, after).

    `settle` turns each merged state into the one stored (the worker enriches it); the
    next event of the request is merged onto that.
    """
    states: dict[str, State] = {}
    applied: list[tuple[Event, State | None, State]] = []
    for key, value in history.records:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        event = event_from_object(doc, key=key, record_ts_ms=0)
        if not isinstance(event, Event):
            continue
        before = states.get(event.key)
        outcome = merge_event(before, event, MergeRules())
        if isinstance(outcome, Applied):
            after = settle(before, outcome.state) if settle else outcome.state
            states[event.key] = after
            applied.append((event, before, after))
    return applied


def reference_stats(history: History) -> dict[str, dict[str, Any]]:
    """Per window id: events, new requests and each counter's sum, every event once.

    Written from DESIGN's rules, independently of how the agents split the work: the
    window is the event's minute and its request's source; only `+N` fields are summed.
    """
    windows: dict[str, dict[str, Any]] = {}
    for event, before, after in applied_events(history):
        source = source_label(after.get("source"))
        window = Window(event.project, source, window_start(event.ts_ms))
        totals = windows.setdefault(window.id, {"events": 0, "new_requests": 0, "counters": {}})
        totals["events"] += 1
        totals["new_requests"] += before is None
        for name, value in event.fields.items():
            if isinstance(value, str) and value.startswith("+"):
                counters = totals["counters"]
                counters[name] = add_numbers(counters.get(name, 0), value)
    return windows


def reference_merge(history: History, city_db: Path) -> dict[str, dict[str, Any]]:
    """Each event applied exactly once, in order: what every merged request must equal."""
    enricher = Enricher(maxminddb.open_database(str(city_db)))
    states = {event.id: after for event, _, after in applied_events(history, enricher.enrich)}
    return {request_id: merged_request(state) for request_id, state in states.items()}
