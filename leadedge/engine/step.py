"""The per-event work of the batch engine, done once per event into write-back tables.

One pass per record: parse, merge, enrich, history, per-minute count. Each record of a
partition's batch is applied in offset order; what the outside world is owed (states to
publish, dead letters, partial counts) waits for the next flush in `Pending`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadedge.engine.write_back import WriteBackTable
from leadedge.history import append, chunk_key, entry
from leadedge.models import Event, Rejection, SourceRecord
from leadedge.processing import Merged, RecordProcessor
from leadedge.stats_state import UnsentPartials, plan_event

log = logging.getLogger(__name__)


class Resends:
    """The partitions whose kept partials were sent again since the process started."""

    def __init__(self) -> None:
        self.done: set[int] = set()

    def due(self, partition: int) -> bool:
        """True once per partition per process: before its first record."""
        if partition in self.done:
            return False
        self.done.add(partition)
        return True


@dataclass
class Pending:
    """What the records applied since the last flush owe the outside world."""

    # Request id → partition: publish its current state (merged topic, Elasticsearch).
    emit: dict[str, int] = field(default_factory=dict)
    dead_letters: list[tuple[SourceRecord, Rejection]] = field(default_factory=list)
    partials: UnsentPartials = field(default_factory=UnsentPartials)
    # Outcome → count, for the metrics (counted per batch, not per event).
    outcomes: Counter[str] = field(default_factory=Counter)
    stats_outcomes: Counter[str] = field(default_factory=Counter)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget what revoked partitions owe: their records are read again."""
        gone = set(partitions)
        self.emit = {rid: p for rid, p in self.emit.items() if p not in gone}
        self.dead_letters = [(r, why) for r, why in self.dead_letters if r.partition not in gone]
        self.partials.drop(gone)


class MergeStep:
    """Applies records to the merged-request, history and stats-partial tables."""

    def __init__(
        self,
        processor: RecordProcessor,
        *,
        history_length: int,
        stats_lateness_ms: int,
        merged: WriteBackTable,
        history: WriteBackTable,
        partials: WriteBackTable,
    ) -> None:
        self.processor = processor
        self.history_length = history_length
        self.stats_lateness_ms = stats_lateness_ms
        self.merged = merged
        self.history = history
        self.partials = partials
        self.resends = Resends()
        self.pending = Pending()

    @property
    def tables(self) -> tuple[WriteBackTable, ...]:
        """The tables this step writes, in the order their changes are flushed."""
        return (self.history, self.merged, self.partials)

    def apply(self, records: Sequence[Any]) -> None:
        """Apply one partition's fetched records (aiokafka `ConsumerRecord`s) in order."""
        for raw in records:
            record = SourceRecord(
                raw.topic, raw.partition, raw.offset, raw.timestamp, raw.key, raw.value
            )
            event = self.merge(record)
            self.count(record, event)

    def merge(self, record: SourceRecord) -> Event | Rejection:
        """Merge one record's event into its request; a bad one becomes a dead letter."""
        partition = record.partition
        merged = self.merged
        pending = self.pending
        event: Event | Rejection = Rejection("internal_error", "not parsed")
        try:
            event = self.processor.parse(record)
            outcome = self.processor.process_event(
                record, event, lambda request_id: merged.get(partition, request_id)
            )
            if isinstance(outcome, Rejection):
                pending.dead_letters.append((record, outcome))
                pending.outcomes["dead_letter"] += 1
            elif isinstance(outcome, Merged):
                self.record_history(partition, outcome, record)
                merged.set(partition, outcome.request_id, outcome.state)
                pending.emit[outcome.request_id] = partition
                pending.outcomes["merged"] += 1
            else:
                # A redelivery re-publishes the current state: a crash between the
                # changelog's acknowledgement and the outputs' leaves nothing behind.
                pending.emit[outcome.request_id] = partition
                pending.outcomes["duplicate"] += 1
        except Exception as exc:
            log.exception("merge failed for %s[%d]@%d", record.topic, partition, record.offset)
            pending.dead_letters.append((record, Rejection("internal_error", repr(exc))))
            pending.outcomes["dead_letter"] += 1
        return event

    def record_history(self, partition: int, merged: Merged, record: SourceRecord) -> None:
        """Append the event to its request's timeline, the open chunk in the state.

        A chunk the event fills is written before the state that no longer holds it; both
        go out in the same flush, in that order (see `leadedge.history.append`).
        """
        full = append(merged.state, entry(merged.event, record), self.history_length)
        if full is not None:
            self.history.set(partition, chunk_key(merged.request_id, full.chunk), full.entries)
            if full.drop is not None:
                self.history.delete(partition, chunk_key(merged.request_id, full.drop))

    def count(self, record: SourceRecord, event: Event | Rejection) -> None:
        """Step 1 of the per-minute stats for one record (see `leadedge.stats_state`)."""
        partition = record.partition
        partials = self.partials
        try:
            plan = plan_event(
                lambda key: partials.get(partition, key),
                record,
                event,
                self.processor.rules,
                lateness_ms=self.stats_lateness_ms,
                resend=self.resends.due(partition),
            )
            for key, value in plan.writes:
                partials.set(partition, key, value)
            self.pending.partials.add(partition, plan.sends)
            self.pending.stats_outcomes[plan.outcome] += 1
        except Exception:
            self.pending.stats_outcomes["failed"] += 1
            log.exception("stats failed for %s[%d]@%d", record.topic, partition, record.offset)

    def take(self) -> Pending:
        """What the flush starting now must deliver; the next records owe the next one."""
        pending, self.pending = self.pending, Pending()
        return pending

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget unflushed work of revoked partitions."""
        gone = list(partitions)
        for table in self.tables:
            table.drop(gone)
        self.pending.drop(gone)
