"""A seeded stream of request histories with bad and resent events, and its reference merge."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geoip2.database
import orjson

from leadedge.demo import ADDRESSES, CHROME, FIREFOX, SAFARI
from leadedge.enrich import Enricher
from leadedge.merge import Applied, MergeRules, merge_event, merged_request
from leadedge.models import Event
from leadedge.validate import event_from_object

BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class History:
    """Records to produce, in order, and what leadedge must make of them."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    bad_indexes: set[int] = field(default_factory=set)


def generate(ids: int, events: int, seed: int = 11) -> History:
    rng = random.Random(seed)
    history = History()
    started: set[str] = set()
    sent_with_event_id: list[tuple[bytes, bytes]] = []
    for n in range(events):
        request_id = f"r{rng.randrange(ids):05d}"
        key = request_id.encode()
        ts = BASE_TS + n
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


def reference_merge(history: History, city_db: Path) -> dict[str, dict[str, Any]]:
    """Each event applied exactly once, in order: what every merged request must equal."""
    enricher = Enricher(geoip2.database.Reader(str(city_db)))
    states: dict[str, dict[str, Any]] = {}
    for key, value in history.records:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        event = event_from_object(doc, key=key, record_ts_ms=0)
        if not isinstance(event, Event):
            continue
        before = states.get(event.id)
        outcome = merge_event(before, event, MergeRules())
        if isinstance(outcome, Applied):
            states[event.id] = enricher.enrich(before, outcome.state)
    return {request_id: merged_request(state) for request_id, state in states.items()}
