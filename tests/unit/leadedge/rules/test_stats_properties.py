"""The aggregates under redelivery: equal to counting each applied event exactly once.

Step 1 counts what the merge applies (`count_applied`, `PartitionCount`) into a partition's
partials; here each partition's records are read with redeliveries (a run of records read
again from an earlier offset, as after a rebalance), through the real merge and step 1
over plain dicts, and the totals step 2 folds from every partial sent are compared with a
reference that merges full states with `merge_event` and counts every applied event once.
Crashes that cut a flush are covered with the real engine in
`tests/unit/leadedge/engine/test_crash_properties.py`, which uses the helpers here.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadedge.rules.merge import Applied, MergeRules, merge_event
from leadedge.rules.models import Event, SourceRecord
from leadedge.rules.stats import (
    increments,
    merge_partial,
    source_label,
    window_document,
    window_start,
)
from leadedge.rules.validate import parse_event
from tests.unit.leadedge.rules.test_stats import Table

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
            before = states.get(event.key)
            outcome = merge_event(before, event, RULES, (rec.partition, rec.offset))
            if not isinstance(outcome, Applied):
                continue
            states[event.key] = outcome.state
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
def test_redelivered_records_count_every_applied_event_exactly_once(
    events: list[Any], data: st.DataObject
) -> None:
    by_partition = records_of(events)
    table = Table()
    delivered: list[dict[str, Any]] = []
    for records in by_partition.values():
        position = 0
        while position < len(records):
            # Read on, or go back to an earlier offset and read again from there.
            if position and data.draw(st.integers(0, 3)) == 0:
                position = data.draw(st.integers(0, position - 1))
            plan = table.run(records[position], lateness_ms=NO_LATENESS)
            position += 1
            delivered.extend(partial for _, partial in plan.sends)
    assert results(delivered) == reference(by_partition)
