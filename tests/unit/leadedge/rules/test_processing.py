from __future__ import annotations

import orjson

from leadedge.rules.enrich import Enricher
from leadedge.rules.merge import MergeRules, encode_state
from leadedge.rules.models import Rejection, SourceRecord, State
from leadedge.rules.processing import Merged, RecordProcessor


def record(offset: int, event: dict[str, object]) -> SourceRecord:
    return SourceRecord("requests", 0, offset, 1_700_000_000_000, b"big", orjson.dumps(event))


def test_an_event_that_would_take_the_state_past_its_bound_is_refused_and_the_rest_applies() -> (
    None
):
    processor = RecordProcessor(
        MergeRules(), Enricher(None), max_event_bytes=65_536, max_state_bytes=300 * 1024
    )
    state: State | None = None
    verdicts = []
    for n in range(12):
        # Each event a new 60 KB field: the merged fields alone grow by 60 KB an event.
        outcome = processor.process(
            record(n, {"id": "big", f"pad{n}": "x" * 60_000}), lambda key, s=state: s
        )
        if isinstance(outcome, Merged):
            state = outcome.state
            verdicts.append("merged")
        else:
            assert isinstance(outcome, Rejection)
            verdicts.append(outcome.reason)
    assert verdicts[:4] == ["merged"] * 4
    assert set(verdicts[5:]) == {"state_too_large"}
    assert state is not None and len(encode_state(state)) <= 300 * 1024
    # A small event still applies to the bounded request.
    outcome = processor.process(record(99, {"id": "big", "clicks": "+1"}), lambda key: state)
    assert isinstance(outcome, Merged) and outcome.state["clicks"] == 1
