"""The per-event work of the batch engine, done once per event into write-back tables.

One pass per record: parse, merge, enrich, history, per-minute count (from the merge's
verdict: only applied events count). Each record of a partition's batch is applied in
offset order; what the outside world is owed (states to publish, dead letters, partial
counts) waits for the next flush in `Pending`.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orjson import Fragment, dumps

from leadedge import health
from leadedge.engine.undecodable import undecodable_reason
from leadedge.engine.write_back import WriteBackTable
from leadedge.rules.history import append, chunk_key, entry
from leadedge.rules.models import Rejection, SourceRecord
from leadedge.rules.processing import Merged, RecordProcessor
from leadedge.rules.stats import MAX_WINDOW_COUNTERS, count_applied
from leadedge.rules.stats_state import PartitionCount, UnsentPartials, kept_partials

log = logging.getLogger(__name__)


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
        max_window_counters: int = MAX_WINDOW_COUNTERS,
        merged: WriteBackTable,
        history: WriteBackTable,
        partials: WriteBackTable,
    ) -> None:
        self.processor = processor
        self.history_length = history_length
        self.stats_lateness_ms = stats_lateness_ms
        # Counter names one partition's partial of a window may hold (rules.stats).
        self.max_window_counters = max_window_counters
        self.merged = merged
        self.history = history
        self.partials = partials
        # The partitions whose kept partials were sent again since they were assigned.
        self.resent: set[int] = set()
        self.pending = Pending()

    @property
    def tables(self) -> tuple[WriteBackTable, ...]:
        """The tables this step writes, in the order their changes are flushed."""
        return (*self.acknowledged_first, self.merged)

    @property
    def acknowledged_first(self) -> tuple[WriteBackTable, ...]:
        """The tables whose changes Kafka must acknowledge before the merged states'.

        History: a state that no longer holds its open chunk must never reach the
        changelog before the chunk does. Partials: a request whose state is stored has
        its events counted, so a replayed redelivery is rightly not counted again.
        """
        return (self.history, self.partials)

    def activate(self, partitions: Iterable[int]) -> bool:
        """Partitions this process reads (their tables recovered): send their kept partials.

        A partial's send may have been lost in a crash after the offsets of what it
        counted were committed; the first time a process reads a partition, it sends
        every partial the partition keeps again. True when anything was queued.
        """
        queued = False
        for partition in partitions:
            if partition in self.resent:
                continue
            self.resent.add(partition)
            kept = kept_partials(functools.partial(self.partials.get, partition), partition)
            self.pending.partials.add(partition, kept)
            queued = queued or bool(kept)
        return queued

    def apply(self, records: Sequence[Any]) -> None:
        """Apply one partition's fetched records (aiokafka `ConsumerRecord`s) in order."""
        counts: dict[int, PartitionCount] = {}
        stats_outcomes = self.pending.stats_outcomes
        for raw in records:
            record = SourceRecord(
                raw.topic, raw.partition, raw.offset, raw.timestamp, raw.key, raw.value
            )
            if raw.value is None and self.undecodable(record, raw.headers):
                stats_outcomes["skipped"] += 1
                continue
            merged = self.merge(record)
            if merged is None:
                stats_outcomes["skipped"] += 1
                continue
            count = counts.get(record.partition)
            if count is None:
                count = counts[record.partition] = PartitionCount(
                    functools.partial(self.partials.get, record.partition),
                    record.partition,
                    lateness_ms=self.stats_lateness_ms,
                    max_counters=self.max_window_counters,
                )
            stats_outcomes[self.count(count, record, merged)] += 1
        for partition, count in counts.items():
            self.store_count(partition, count)

    def merge(self, record: SourceRecord) -> Merged | None:
        """Merge one record's event into its request; a bad one becomes a dead letter.

        Returns the outcome when the merge applied the event (it is then counted).
        """
        partition = record.partition
        merged = self.merged
        pending = self.pending
        try:
            event = self.processor.parse(record)
            outcome = self.processor.process_event(
                record, event, lambda key: merged.get(partition, key)
            )
            if isinstance(outcome, Rejection):
                pending.dead_letters.append((record, outcome))
                pending.outcomes["dead_letter"] += 1
            elif isinstance(outcome, Merged):
                self.record_history(partition, outcome, record)
                merged.set(partition, outcome.key, outcome.state)
                pending.emit[outcome.key] = partition
                pending.outcomes["merged"] += 1
                return outcome
            else:
                # A redelivery re-publishes the current state: a crash between the
                # changelog's acknowledgement and the outputs' leaves nothing behind.
                pending.emit[outcome.key] = partition
                pending.outcomes["duplicate"] += 1
        except Exception as exc:
            log.exception("merge failed for %s[%d]@%d", record.topic, partition, record.offset)
            pending.dead_letters.append((record, Rejection("internal_error", repr(exc))))
            pending.outcomes["dead_letter"] += 1
        return None

    def undecodable(self, record: SourceRecord, headers: Any) -> bool:
        """A placeholder for an offset Kafka's client could not decode becomes a dead letter.

        See `leadedge.engine.undecodable`: the dead letter names the offset and why, the
        record's bytes stay in the source topic.
        """
        reason = undecodable_reason(headers)
        if reason is None:
            return False
        self.pending.dead_letters.append((record, Rejection("undecodable_record", reason)))
        self.pending.outcomes["dead_letter"] += 1
        return True

    def record_history(self, partition: int, merged: Merged, record: SourceRecord) -> None:
        """Append the event to its request's timeline, the open chunk in the state.

        A chunk the event fills is written before the state that no longer holds it; both
        go out in the same flush, in that order (see `leadedge.rules.history.append`).
        """
        # Encoded now, while the event's fields are fresh in memory: the open chunk is
        # written with the state at every flush that changes it, and an entry already
        # encoded is copied as bytes, not walked again (orjson `Fragment`).
        item = Fragment(dumps(entry(merged.event, record)))
        full = append(merged.state, item, self.history_length)
        if full is not None:
            self.history.set(partition, chunk_key(merged.key, full.chunk), full.entries)
            if full.drop is not None:
                self.history.delete(partition, chunk_key(merged.key, full.drop))

    def count(self, count: PartitionCount, record: SourceRecord, merged: Merged) -> str:
        """Step 1 of the per-minute stats of an applied event (`leadedge.rules.stats_state`)."""
        try:
            counted = count_applied(
                merged.event, merged.state, merged.created, self.processor.rules, merged.increments
            )
            return count.add(
                counted,
                offset=record.offset,
                event_ts_ms=merged.event.ts_ms,
                record_ts_ms=record.timestamp_ms,
            )
        except Exception as exc:
            where = (record.topic, record.partition, record.offset)
            log.exception("stats failed for %s[%d]@%d", *where)
            # A count lost: /health says so until the next batch counts (the metric and the
            # log keep the number and the offsets).
            health.report_failure("stats-count", f"{type(exc).__name__}: {exc}"[:500])
            return "failed"

    def store_count(self, partition: int, count: PartitionCount) -> None:
        """Write a batch's counts to the partials table; its sends wait for a flush."""
        try:
            plan = count.finish()
        except Exception as exc:
            log.exception("stats failed for a batch of partition %d", partition)
            health.report_failure("stats-count", f"{type(exc).__name__}: {exc}"[:500])
            self.pending.stats_outcomes["failed"] += 1
            return
        if not self.pending.stats_outcomes.get("failed"):
            health.report_recovered("stats-count")
        for key, value in plan.writes:
            self.partials.set(partition, key, value)
        self.pending.partials.add(partition, plan.sends)

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
        self.resent.difference_update(gone)
