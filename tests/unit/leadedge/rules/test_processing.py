from __future__ import annotations

from typing import Any

import orjson
import pytest

from leadedge.rules.enrich import Enricher, user_agent_fields
from leadedge.rules.merge import SOURCE, MergeRules, encode_state
from leadedge.rules.models import Rejection, SourceRecord, State, request_key
from leadedge.rules.processing import Merged, RecordProcessor, Skipped


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


# One record at a time through `RecordProcessor.process`, as the merge agent sends them.

TS_MS = 1_700_000_000_000


def source(
    offset: int, value: bytes | dict[str, Any] | None, key: bytes | None = b"r1", partition: int = 0
) -> SourceRecord:
    raw = orjson.dumps(value) if isinstance(value, dict) else value
    return SourceRecord("requests", partition, offset, TS_MS, key, raw)


class Table:
    """The merged requests as the agent keeps them: each Merged outcome's state stored."""

    def __init__(self, processor: RecordProcessor) -> None:
        self.processor = processor
        self.states: dict[str, State] = {}
        self.looked_up: list[str] = []

    def lookup(self, key: str) -> State | None:
        self.looked_up.append(key)
        return self.states.get(key)

    def process(self, record: SourceRecord) -> Merged | Skipped | Rejection:
        outcome = self.processor.process(record, self.lookup)
        if isinstance(outcome, Merged):
            self.states[outcome.key] = outcome.state
        return outcome


def processor(enricher: Enricher | None = None, max_event_bytes: int = 65_536) -> RecordProcessor:
    return RecordProcessor(MergeRules(), enricher or Enricher(None), max_event_bytes)


def rejected(outcome: object) -> str:
    assert isinstance(outcome, Rejection), outcome
    assert outcome.detail
    return outcome.reason


def test_a_value_over_the_event_limit_is_refused_as_too_large_before_it_is_read() -> None:
    table = Table(processor(max_event_bytes=100))
    at_limit = {"id": "r1", "pad": ""}
    at_limit["pad"] = "x" * (100 - len(orjson.dumps(at_limit)))
    assert len(orjson.dumps(at_limit)) == 100
    assert isinstance(table.process(source(0, at_limit)), Merged)
    over = {**at_limit, "pad": at_limit["pad"] + "x"}
    outcome = table.process(source(1, over))
    assert rejected(outcome) == "too_large"
    assert isinstance(outcome, Rejection) and outcome.detail == "event has 101 bytes, over 100"
    # Not even bytes that are no JSON at all are parsed past the limit.
    assert rejected(table.process(source(2, b"{" * 101))) == "too_large"
    assert table.looked_up == ["r1"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"id": "r1",', "not_json"),
        (b"not json", "not_json"),
        (b'{"id": "r1", "n": NaN}', "non_finite_number"),
        (b'{"id": "r1", "s": "\xff"}', "not_utf8"),
        (None, "empty_value"),
        (b'["r1"]', "not_object"),
    ],
)
def test_bytes_that_are_not_a_json_event_are_refused_saying_why(
    value: bytes | None, reason: str
) -> None:
    table = Table(processor())
    assert rejected(table.process(source(0, value))) == reason
    # Refused before any state is read.
    assert table.looked_up == []


def test_a_record_keyed_otherwise_than_its_events_id_is_refused_as_key_mismatch() -> None:
    table = Table(processor())
    for key in (b"r2", None, b"R1", b"r1 "):
        outcome = table.process(source(0, {"id": "r1", "clicks": "+1"}, key=key))
        assert rejected(outcome) == "key_mismatch"
    # An integer id is keyed by its decimal digits.
    assert isinstance(table.process(source(0, {"id": 42}, key=b"42")), Merged)
    assert table.looked_up == ["42"]


def test_an_event_that_conflicts_with_the_stored_types_is_refused_whole() -> None:
    table = Table(processor())
    assert isinstance(
        table.process(source(0, {"id": "r1", "name": "ann", "meta": {"a": 1}})), Merged
    )
    before = orjson.dumps(table.states["r1"])
    conflicts = [
        {"id": "r1", "clicks": "+1", "name": "+1"},  # an increment on a string
        {"id": "r1", "clicks": "+1", "name": {"first": "ann"}},  # an object on a string
        {"id": "r1", "clicks": "+1", "meta": {"a": {"b": 1}}},  # an object on a number
    ]
    for offset, event in enumerate(conflicts, start=1):
        outcome = table.process(source(offset, event))
        assert rejected(outcome) == "type_conflict"
    # Whole or not at all: not even the event's valid increment was applied.
    assert orjson.dumps(table.states["r1"]) == before
    assert "clicks" not in table.states["r1"]


def test_a_redelivered_record_is_skipped_and_changes_nothing() -> None:
    table = Table(processor())
    first = table.process(source(5, {"id": "r1", "clicks": "+1"}))
    assert isinstance(first, Merged) and first.state[SOURCE] == [0, 5]
    for offset in (5, 4, 0):
        outcome = table.process(source(offset, {"id": "r1", "clicks": "+1"}))
        assert outcome == Skipped("r1", f"offset {offset} already applied")
    assert table.states["r1"]["clicks"] == 1
    # The same offset of another partition is another record.
    moved = table.process(source(5, {"id": "r1", "clicks": "+1"}, partition=1))
    assert isinstance(moved, Merged) and moved.state["clicks"] == 2
    assert moved.state[SOURCE] == [1, 5]


def test_a_repeated_event_id_is_skipped_whatever_offset_it_comes_at() -> None:
    table = Table(processor())
    assert isinstance(table.process(source(0, {"id": "r1", "event_id": "e1", "n": "+1"})), Merged)
    assert isinstance(table.process(source(1, {"id": "r1", "event_id": 7, "n": "+1"})), Merged)
    again = table.process(source(2, {"id": "r1", "event_id": "e1", "n": "+1"}))
    assert again == Skipped("r1", "event_id 'e1' already applied")
    # An integer event_id is the same id as its digits.
    assert table.process(source(3, {"id": "r1", "event_id": "7", "n": "+1"})) == Skipped(
        "r1", "event_id '7' already applied"
    )
    assert table.states["r1"]["n"] == 2
    fresh = table.process(source(4, {"id": "r1", "event_id": "e2", "n": "+1"}))
    assert isinstance(fresh, Merged) and fresh.state["n"] == 3


def test_the_first_applied_event_creates_the_request_and_increments_are_listed() -> None:
    table = Table(processor())
    first = table.process(
        source(0, {"id": "r1", "project": "alpha", "clicks": "+1", "meta": {"views": "+2"}})
    )
    assert isinstance(first, Merged)
    assert (first.key, first.created) == (request_key("alpha", "r1"), True)
    assert first.increments == {"clicks": "+1", "meta.views": "+2"}
    assert (first.event.id, first.event.project) == ("r1", "alpha")
    assert (first.state["clicks"], first.state["meta"]) == (1, {"views": 2})
    second = table.process(
        source(1, {"id": "r1", "project": "alpha", "clicks": "-0.5", "source": "+x"})
    )
    assert isinstance(second, Merged) and second.created is False
    # "+x" is no number: a plain value, not an increment.
    assert second.increments == {"clicks": "-0.5"}
    assert (second.state["clicks"], second.state["source"]) == (0.5, "+x")
    third = table.process(source(2, {"id": "r1", "project": "alpha", "source": "ads"}))
    assert isinstance(third, Merged) and (third.created, third.increments) == (False, {})
    # Looked up under the request's key, (project, id), every time.
    assert table.looked_up == [request_key("alpha", "r1")] * 3


def test_a_refused_first_event_creates_nothing_and_the_next_one_does() -> None:
    table = Table(processor())
    assert rejected(table.process(source(0, {"id": "r1", "n": "+" + "9" * 70}))) == "out_of_range"
    assert table.states == {}
    outcome = table.process(source(1, {"id": "r1", "n": "+1"}))
    assert isinstance(outcome, Merged) and outcome.created is True


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


class CityDatabase:
    """A City database that knows two public addresses and counts its lookups."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def get(self, ip_address: str) -> Any:
        self.lookups.append(ip_address)
        country = {"8.8.8.8": "US", "1.1.1.1": "AU"}.get(ip_address)
        return {"country": {"iso_code": country}} if country else None


def test_user_agent_enrichment_runs_only_when_the_user_agent_changes() -> None:
    enricher = Enricher(None)
    parsed: list[str] = []

    def parse(original: str) -> dict[str, Any]:
        parsed.append(original)
        return user_agent_fields(original)

    # Past the cache, so that every parse it asks for is counted.
    enricher._user_agent = parse  # type: ignore[assignment]
    table = Table(processor(enricher))
    steps = [
        ({"useragent": FIREFOX}, [FIREFOX]),
        ({"clicks": "+1"}, []),  # no user agent sent: kept, not parsed again
        ({"useragent": FIREFOX, "clicks": "+1"}, []),  # the same one sent again
        ({"useragent": CHROME}, [CHROME]),
        ({"useragent": FIREFOX}, [FIREFOX]),  # changed back: parsed again
    ]
    for offset, (fields, expected) in enumerate(steps):
        parsed.clear()
        outcome = table.process(source(offset, {"id": "r1", **fields}))
        assert isinstance(outcome, Merged)
        assert parsed == expected, (offset, fields)
        agent = outcome.state["user_agent"]
        assert agent == user_agent_fields(outcome.state["useragent"])
    assert table.states["r1"]["user_agent"]["name"] == "Firefox"
    # The user agent removed (null): its enrichment goes with it.
    parsed.clear()
    outcome = table.process(source(len(steps), {"id": "r1", "useragent": None}))
    assert isinstance(outcome, Merged) and parsed == []
    assert "user_agent" not in outcome.state and "useragent" not in outcome.state


def test_geo_enrichment_follows_the_address_and_goes_when_it_does() -> None:
    database = CityDatabase()
    table = Table(processor(Enricher(database)))
    first = table.process(source(0, {"id": "r1", "ipaddress": "8.8.8.8"}))
    assert isinstance(first, Merged) and first.state["geo"] == {"country_iso_code": "US"}
    assert database.lookups == ["8.8.8.8"]
    kept = table.process(source(1, {"id": "r1", "clicks": "+1"}))
    assert isinstance(kept, Merged) and kept.state["geo"] == {"country_iso_code": "US"}
    moved = table.process(source(2, {"id": "r1", "ipaddress": "1.1.1.1"}))
    assert isinstance(moved, Merged) and moved.state["geo"] == {"country_iso_code": "AU"}
    assert database.lookups == ["8.8.8.8", "1.1.1.1"]
    # An address the database does not know takes the old geo away, not keeps it stale.
    unknown = table.process(source(3, {"id": "r1", "ipaddress": "9.9.9.9"}))
    assert isinstance(unknown, Merged) and "geo" not in unknown.state
    back = table.process(source(4, {"id": "r1", "ipaddress": "8.8.8.8"}))
    assert isinstance(back, Merged) and back.state["geo"] == {"country_iso_code": "US"}
    gone = table.process(source(5, {"id": "r1", "ipaddress": None}))
    assert isinstance(gone, Merged) and "geo" not in gone.state


def test_an_event_may_not_send_the_enrichments_own_fields() -> None:
    table = Table(processor())
    for offset, field in enumerate(("geo", "user_agent")):
        outcome = table.process(source(offset, {"id": "r1", field: {"name": "forged"}}))
        assert rejected(outcome) == "reserved_field"
