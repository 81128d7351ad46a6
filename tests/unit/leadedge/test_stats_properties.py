"""The aggregates through crashes: equal to applying each event exactly once.

A model of the worker: step 1 writes each record's plan to its partition's changelog and
sends its partials; a crash keeps any prefix of each changelog, commits only records whose
writes all persisted, loses any send after the commit, and restarts from the committed
offsets with a fresh process (so kept partials are sent again). The reference merges
full states with `merge_event` and counts every applied event once.

The worker holds partials back and sends the newest of each window before each commit
(`agents.stats.send_partials`): a snapshot that holds at least what the model's per-record
sends before the commit hold, so the model covers it.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.merge import Applied, MergeRules, merge_event
from leadedge.models import Event, SourceRecord
from leadedge.stats import increments, merge_partial, source_label, window_document, window_start
from leadedge.stats_state import plan_record
from leadedge.validate import parse_event

T0 = 1_700_000_040_000
PARTITIONS = 3
IDS = ["a", "b", "c", "d", "e", "f"]
RULES = MergeRules()
NO_LATENESS = 10**15

FIELDS = st.one_of(
    st.fixed_dictionaries({"clicks": st.sampled_from(["+1", "+2", "-1", "+0.5"])}),
    st.fixed_dictionaries({"source": st.sampled_from([1, 2, "web"])}),
    st.fixed_dictionaries({"tag": st.sampled_from(["x", "+1", {"y": 1}])}),
    st.fixed_dictionaries(
        {"impressions": st.sampled_from(["+3", "+.25"]), "clicks": st.just("+1")}
    ),
)
EVENT = st.tuples(
    st.sampled_from(IDS),
    FIELDS,
    st.integers(0, 5),  # minute of the event time
    st.sampled_from([None, None, None, "e1", "e2"]),
    st.sampled_from(["default", "default", "default", "other"]),
    st.booleans(),  # a broken record instead
)


def records_of(events: list[Any]) -> dict[int, list[SourceRecord]]:
    by_partition: dict[int, list[SourceRecord]] = defaultdict(list)
    for request_id, fields, minute, event_id, project, broken in events:
        partition = IDS.index(request_id) % PARTITIONS
        offset = len(by_partition[partition])
        doc: dict[str, Any] = {"id": request_id, "ts": T0 + minute * 60_000 + 7, **fields}
        if event_id:
            doc["event_id"] = event_id
        if project != "default":
            doc["project"] = project
        value = b"{" if broken else orjson.dumps(doc)
        by_partition[partition].append(
            SourceRecord("requests", partition, offset, T0 + 10**7, request_id.encode(), value)
        )
    return by_partition


def reference(by_partition: dict[int, list[SourceRecord]]) -> dict[str, tuple[Any, ...]]:
    states: dict[str, Any] = {}
    windows: dict[str, list[Any]] = {}
    for records in by_partition.values():
        for rec in records:
            event = parse_event(rec.value, key=rec.key, record_ts_ms=0, max_bytes=65536)
            if not isinstance(event, Event):
                continue
            before = states.get(event.id)
            outcome = merge_event(before, event, RULES, (rec.partition, rec.offset))
            if not isinstance(outcome, Applied):
                continue
            states[event.id] = outcome.state
            key = "|".join(
                [
                    event.project,
                    source_label(outcome.state.get("source")),
                    str(window_start(event.ts_ms)),
                ]
            )
            window = windows.setdefault(key, [0, 0, defaultdict(Decimal)])
            window[0] += 1
            window[1] += before is None
            for name, amount in increments(event.fields, RULES).items():
                window[2][name] += Decimal(amount)
    return {key: (w[0], w[1], dict(w[2])) for key, w in windows.items()}


def results(delivered: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    totals: dict[str, Any] = {}
    for partial in delivered:
        key = "|".join([partial["project"], partial["source"], str(partial["start_ms"])])
        totals[key] = merge_partial(totals.get(key), partial)
    found = {}
    for key, total in totals.items():
        doc = window_document(total)
        counters = {name: Decimal(repr(value)) for name, value in doc["counters"].items()}
        found[key] = (doc["events"], doc["new_requests"], counters)
    return found


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENT, max_size=40), data=st.data())
def test_crashes_and_replays_count_every_applied_event_exactly_once(
    events: list[Any], data: st.DataObject
) -> None:
    by_partition = records_of(events)
    logs: dict[int, list[tuple[int, str, Any]]] = defaultdict(list)  # (offset, key, value)
    committed = dict.fromkeys(range(PARTITIONS), 0)
    delivered: list[dict[str, Any]] = []
    crashes = data.draw(st.integers(0, 3))
    for crash in range(crashes + 1):
        last_round = crash == crashes
        table: dict[str, Any] = {}
        for p in range(PARTITIONS):
            for _, key, value in logs[p]:
                table[key] = value
                if value is None:
                    del table[key]
        started: set[int] = set()
        for p in range(PARTITIONS):
            records = by_partition.get(p, [])
            stop = (
                len(records) if last_round else data.draw(st.integers(committed[p], len(records)))
            )
            sends: list[tuple[int, dict[str, Any]]] = []
            base = len(logs[p])
            ends: list[tuple[int, int]] = []  # (offset, log length after its writes)
            for rec in records[committed[p] : stop]:
                plan = plan_record(
                    table.get,
                    rec,
                    RULES,
                    lateness_ms=NO_LATENESS,
                    max_event_bytes=65536,
                    resend=rec.partition not in started,
                )
                started.add(rec.partition)
                for key, value in plan.writes:
                    logs[p].append((rec.offset, key, value))
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = value
                ends.append((rec.offset, len(logs[p])))
                sends.extend((rec.offset, partial) for _, partial in plan.sends)
            if last_round:
                delivered.extend(partial for _, partial in sends)
                continue
            # The crash: a prefix of this run's writes persisted; the commit covers only
            # records all of whose writes did; any send after the commit may be lost.
            cut = base + data.draw(st.integers(0, len(logs[p]) - base))
            del logs[p][cut:]
            complete = committed[p]
            for offset, end in ends:
                if end > cut:
                    break
                complete = offset + 1
            new_commit = data.draw(st.integers(committed[p], complete))
            for offset, partial in sends:
                if offset < new_commit or data.draw(st.booleans()):
                    delivered.append(partial)
            committed[p] = new_commit
    assert results(delivered) == reference(by_partition)
