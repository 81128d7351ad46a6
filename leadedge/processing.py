"""One raw record through validation, merge and enrichment: the merge agent's whole job.

Pure: the caller looks the previous state up and stores the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from leadedge.enrich import Enricher
from leadedge.merge import Applied, Duplicate, MergeRules, merge_event
from leadedge.models import Event, Rejection, SourceRecord, State
from leadedge.validate import parse_event


@dataclass(frozen=True, slots=True)
class Merged:
    """The record changed the request keyed `key` (see `request_key`); `state` is what to store."""

    key: str
    state: State
    event: Event
    # The event created the request (its first applied event): counted as a new request.
    created: bool = False


@dataclass(frozen=True, slots=True)
class Skipped:
    """The record was a redelivery or a repeated event_id."""

    key: str
    why: str


Outcome = Merged | Skipped | Rejection
# The state stored under a request's key, or None.
StateLookup = Callable[[str], State | None]


class RecordProcessor:
    """Validates, merges and enriches records with one deployment's rules."""

    def __init__(self, rules: MergeRules, enricher: Enricher, max_event_bytes: int) -> None:
        self.rules = rules
        self.enricher = enricher
        self.max_event_bytes = max_event_bytes

    def process(self, record: SourceRecord, lookup: StateLookup) -> Outcome:
        """Apply one record to the state `lookup` returns for its request id."""
        return self.process_event(record, self.parse(record), lookup)

    def parse(self, record: SourceRecord) -> Event | Rejection:
        """Validate one record's bytes as an event."""
        return parse_event(
            record.value,
            key=record.key,
            record_ts_ms=record.timestamp_ms,
            max_bytes=self.max_event_bytes,
        )

    def process_event(
        self, record: SourceRecord, event: Event | Rejection, lookup: StateLookup
    ) -> Outcome:
        """Apply a record already parsed to the state `lookup` returns for its request id."""
        if isinstance(event, Rejection):
            return event
        key = event.key
        before = lookup(key)
        outcome = merge_event(before, event, self.rules, (record.partition, record.offset))
        if isinstance(outcome, Rejection):
            return outcome
        if isinstance(outcome, Duplicate):
            return Skipped(key, outcome.why)
        assert isinstance(outcome, Applied)
        return Merged(key, self.enricher.enrich(before, outcome.state), event, before is None)
