"""One raw record through validation, merge and enrichment: the merge agent's whole job.

Pure: the caller looks the previous state up and stores the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from leadedge.rules.enrich import Enricher
from leadedge.rules.history import MAX_ENTRY_BYTES
from leadedge.rules.merge import COUNT, Applied, Duplicate, MergeRules, encode_state, merge_event
from leadedge.rules.models import Event, Rejection, SourceRecord, State
from leadedge.rules.validate import parse_event


# Not frozen, like `SourceRecord`: one per record.
@dataclass(slots=True)
class Merged:
    """The record changed the request keyed `key` (see `request_key`); `state` is what to store."""

    key: str
    state: State
    event: Event
    # The event created the request (its first applied event): counted as a new request.
    created: bool = False
    # Every increment the event applied, by dotted name (`leadedge.rules.merge.Applied`).
    increments: dict[str, str] | None = None


@dataclass(slots=True)
class Skipped:
    """The record was a redelivery or a repeated event_id."""

    key: str
    why: str


Outcome = Merged | Skipped | Rejection

# A request's state (merged fields, open history chunk, event ids) is one record in the
# table's changelog: it must stay under the producer's 1 MiB record limit.
MAX_STATE_BYTES = 768 * 1024
CHECK_EVERY = 16
# What a state may grow by between two measures: CHECK_EVERY events of at most
# MAX_ENTRY_BYTES, each with its history entry, and the enrichment.
STATE_MARGIN_BYTES = CHECK_EVERY * 2 * (MAX_ENTRY_BYTES + 512)
# The state stored under a request's key, or None.
StateLookup = Callable[[str], State | None]


class RecordProcessor:
    """Validates, merges and enriches records with one deployment's rules."""

    def __init__(
        self,
        rules: MergeRules,
        enricher: Enricher,
        max_event_bytes: int,
        max_state_bytes: int = MAX_STATE_BYTES,
    ) -> None:
        self.rules = rules
        self.enricher = enricher
        self.max_event_bytes = max_event_bytes
        self.max_state_bytes = max_state_bytes

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
        after = self.enricher.enrich(before, outcome.state)
        size = len(record.value or b"")
        # Measured after every large event and every CHECK_EVERY events: between two
        # measures a state grows by less than STATE_MARGIN_BYTES, so it never reaches
        # Kafka's record limit, and the verdict depends on the events alone (a replay
        # after a crash decides alike).
        if size > MAX_ENTRY_BYTES or after[COUNT] % CHECK_EVERY == 0:
            encoded = len(encode_state(after))
            if encoded > self.max_state_bytes:
                return Rejection(
                    "state_too_large",
                    f"request {event.id!r} would take {encoded} bytes, over "
                    f"{self.max_state_bytes} (LEADEDGE_MAX_STATE_BYTES)",
                )
        return Merged(key, after, event, before is None, outcome.increments)
