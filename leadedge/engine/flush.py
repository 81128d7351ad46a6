"""The flush: each changed key written once, in batches; offsets acknowledged only after.

A flush takes what the step changed since the last one and, in order:

1. sends the history chunks that filled and the changed stats partials (a state that no
   longer holds its open chunk must never reach a changelog before the chunk does, and a
   stored state means its events are counted: see `MergeStep.acknowledged_first`);
2. sends, together, the changelog record of every changed request, its current state
   (and that of every redelivered one) to `merged-requests` and the dead letters, and
   indexes the same states in Elasticsearch in one bulk; when the stats interval is due,
   the newest partial of each window changed since the last send goes with them;
3. writes the local table stores, now that the changelog holds every value;
4. acknowledges the source offsets, so Faust's next commit may include them.

A crash anywhere before step 4 leaves the offsets uncommitted: the records are read again,
found applied (the state carries its source offset) and their states published again.

Intake goes on while a flush is under way, into a new cache; once that holds
`max_pending_records` records it waits for the flush, which bounds memory to two flushes'
worth of changed state and stops reading while Kafka or Elasticsearch is away.

Stats partials are sent once per `stats_send_interval_s`, not with every flush: each
window's partial is a full snapshot, so one send per interval carries every count, and
step 2 (`agents.stats`) reads a few records per second instead of one per window per
flush. A flush for a commit on revocation or stop sends them all; after a crash, the
partitions' next reader sends every kept partial again (`MergeStep.activate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from faust.types import TP

from leadedge import metrics
from leadedge.engine.dead_letters import dead_letter_record
from leadedge.engine.kafka_out import KafkaBatchWriter, OutRecord
from leadedge.engine.step import MergeStep, Pending
from leadedge.engine.write_back import WriteBackTable, encode_key
from leadedge.rules.merge import COUNT, SOURCE, UPDATED, merged_request
from leadedge.rules.models import Rejection, SourceRecord
from leadedge.rules.stats_state import UnsentPartials
from leadedge.sinks.elasticsearch import Document, ElasticsearchSink

log = logging.getLogger(__name__)

Ack = Callable[[TP, int, int], None]


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Where the flush publishes."""

    requests: str
    merged: str
    dead_letters: str
    stats_partials: str


class BatchEngine:
    """Holds applied-but-unflushed work and flushes it on interval, size and demand."""

    def __init__(
        self,
        step: MergeStep,
        *,
        kafka: KafkaBatchWriter,
        elasticsearch: ElasticsearchSink | None,
        topics: OutputTopics,
        flush_interval_s: float,
        max_pending_records: int,
        on_fatal: Callable[[BaseException], Awaitable[None]],
        stats_send_interval_s: float = 1.0,
    ) -> None:
        self.step = step
        self.kafka = kafka
        self.elasticsearch = elasticsearch
        self.topics = topics
        self.flush_interval_s = flush_interval_s
        self.max_pending_records = max_pending_records
        self.on_fatal = on_fatal
        self.stats_send_interval_s = stats_send_interval_s
        self.ack: Ack | None = None
        # Partials whose changelog is acknowledged, waiting for the next stats send.
        self.unsent = UnsentPartials()
        self.partials_sent_at = time.monotonic()
        # Per source partition: [first, last offset, records] applied since the last flush.
        self.offsets: dict[TP, list[int]] = {}
        self.pending_records = 0
        self.first_pending_at: float | None = None
        self.failed = False
        self._lock = asyncio.Lock()
        self._due = asyncio.Event()
        self._flushed = asyncio.Event()
        self._in_merged = metrics.agent_records_total.labels("merge", "in")
        self._out_merged = metrics.agent_records_total.labels("merge", "out")
        # The merged records whose states a flush indexed, and the documents written.
        self._in_index = metrics.agent_records_total.labels("index", "in")
        self._out_index = metrics.agent_records_total.labels("index", "out")
        self._outcomes = {
            name: metrics.events_total.labels(name)
            for name in ("merged", "duplicate", "dead_letter")
        }

    # Intake side: called by the consumer between fetches, never concurrently.

    def handle(self, tp: TP, first_offset: int, records: Sequence[Any]) -> None:
        """Apply one partition's fetched records; `first_offset` is where acking starts.

        `first_offset` may be before the first record: offsets Kafka skipped (compaction,
        transaction markers) are acknowledged with the records after them.
        """
        self.step.apply(records)
        last = records[-1].offset
        span = self.offsets.get(tp)
        if span is None:
            self.offsets[tp] = [first_offset, last, len(records)]
        else:
            span[1] = last
            span[2] += len(records)
        self.pending_records += len(records)
        self._in_merged.inc(len(records))
        if self.first_pending_at is None:
            self.first_pending_at = time.monotonic()
            self._due.set()
        if self.pending_records >= self.max_pending_records:
            self._due.set()

    async def wait_for_room(self) -> None:
        """Backpressure: wait while the unflushed records are at their bound."""
        while self.pending_records >= self.max_pending_records and not self.failed:
            self._flushed.clear()
            self._due.set()
            await self._flushed.wait()

    def activate(self, tps: set[TP]) -> None:
        """The `requests` partitions being read now: see `MergeStep.activate`."""
        partitions = {tp.partition for tp in tps if tp.topic == self.topics.requests}
        if self.step.activate(partitions):
            self._due.set()

    def drop(self, tps: set[TP]) -> None:
        """Forget unflushed work of revoked partitions; their records are read again."""
        self.unsent.drop({tp.partition for tp in tps if tp.topic == self.topics.requests})
        for tp in tps:
            span = self.offsets.pop(tp, None)
            if span is not None:
                self.pending_records -= span[2]
        if not self.offsets:
            self.pending_records = 0
            self.first_pending_at = None
        self._flushed.set()
        self.step.drop({tp.partition for tp in tps if tp.topic == self.topics.requests})

    # Flush side.

    async def run(self) -> None:
        """Flush when the oldest unflushed record is due, on size, and for held partials."""
        while not self.failed:
            self._due.clear()
            wait_s = self._until_due()
            if wait_s is None or wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due.wait(), wait_s)
                continue
            await self.flush(send_partials=self._partials_due())

    def _until_due(self) -> float | None:
        """Seconds until the next flush is due; None when nothing waits for one."""
        if self.pending_records >= self.max_pending_records:
            return 0.0
        deadlines = []
        if self.first_pending_at is not None:
            deadlines.append(self.first_pending_at + self.flush_interval_s)
        if self.unsent or self.step.pending.partials:
            deadlines.append(self.partials_sent_at + self.stats_send_interval_s)
        if not deadlines:
            return None
        return max(min(deadlines) - time.monotonic(), 0.0)

    def _partials_due(self) -> bool:
        return time.monotonic() >= self.partials_sent_at + self.stats_send_interval_s

    async def flush(self, *, send_partials: bool = True) -> bool:
        """Deliver everything applied so far; True once it is stored and acknowledged.

        `send_partials` off keeps the stats partials held for the next interval's send.
        """
        async with self._lock:
            if self.failed:
                return False
            partials = bool(self.unsent or self.step.pending.partials)
            if not self.offsets and not self.step.pending.emit and not partials:
                self._flushed.set()
                return True
            try:
                await self._flush_locked(send_partials)
            except Exception as exc:
                # Nothing of this flush is acknowledged: a restart reads it again.
                self.failed = True
                self._flushed.set()
                log.exception("flush failed; the worker stops and its records are read again")
                await self.on_fatal(exc)
                return False
            finally:
                self._flushed.set()
            return True

    @property
    def all_delivered(self) -> bool:
        """True when nothing applied is waiting for a flush and no flush failed."""
        pending = self.step.pending
        return (
            not self.failed
            and not self.offsets
            and not pending.emit
            and not pending.partials
            and not self.unsent
        )

    async def _flush_locked(self, send_partials: bool) -> None:
        started = time.monotonic()
        offsets, self.offsets = self.offsets, {}
        self.pending_records = 0
        self.first_pending_at = None
        pending = self.step.take()
        self.unsent.update(pending.partials)
        tables = self.step.tables
        encoded = {}
        for table in tables:
            table.take()
            encoded[table.name] = table.encoded()
        before_states = self.step.acknowledged_first
        reached = await self.kafka.write(
            [r for table in before_states for r in changelog_records(table, encoded[table.name])]
        )
        outputs, documents, updated_s = self._outputs(pending)
        if send_partials:
            self.partials_sent_at = time.monotonic()
            outputs.extend(
                OutRecord(self.topics.stats_partials, None, window_id.encode(), orjson.dumps(p))
                for window_id, p in self.unsent.take()
            )
        records = [
            *(
                r
                for table in tables
                if table not in before_states
                for r in changelog_records(table, encoded[table.name])
            ),
            *outputs,
        ]
        if self.elasticsearch is not None and documents:
            written, result = await asyncio.gather(
                self.kafka.write(records), self.elasticsearch.write(documents)
            )
            reached.update(written)
            if result.rejected:
                await self.kafka.write(self._rejected_documents(result.rejected, pending))
            self._in_index.inc(pending.outcomes.get("merged", 0))
            self._out_index.inc(len(documents))
            now = time.time()
            for updated in updated_s:
                metrics.freshness_seconds.observe(max(now - updated, 0.0))
        else:
            reached.update(await self.kafka.write(records))
        for table in tables:
            table.stored(
                encoded[table.name],
                {p: reached[(table.changelog_topic, p)] for p in encoded[table.name]},
            )
        if self.ack is not None:
            for tp, (first, last, _) in offsets.items():
                self.ack(tp, first, last)
        self._count(pending)
        log.debug(
            "flushed %d requests, %d dead letters in %.1f ms",
            len(pending.emit),
            len(pending.dead_letters),
            (time.monotonic() - started) * 1000,
        )

    def _outputs(self, pending: Pending) -> tuple[list[OutRecord], list[Document], list[float]]:
        """The records to produce, the documents to index, and when each was updated."""
        topics = self.topics
        merged = self.step.merged
        records: list[OutRecord] = []
        documents: list[Document] = []
        updated_s: list[float] = []
        for request_id, partition in pending.emit.items():
            # As this flush's changelog has it, not as records handled since have left it.
            state = merged.flushed_value(partition, request_id)
            if state is None:
                continue
            encoded = orjson.dumps(merged_request(state))
            records.append(OutRecord(topics.merged, None, request_id.encode(), encoded))
            if self.elasticsearch is not None:
                # The same bytes: the merged request is encoded once for both outputs.
                documents.append((request_id, int(state[COUNT]), encoded))
                updated_s.append(state[UPDATED] / 1000)
        now_ms = int(time.time() * 1000)
        records.extend(
            dead_letter_record(topics.dead_letters, record, rejection, now_ms)
            for record, rejection in pending.dead_letters
        )
        return records, documents, updated_s

    def _rejected_documents(
        self, rejected: list[tuple[str, Any]], pending: Pending
    ) -> list[OutRecord]:
        """Dead letters for states Elasticsearch refused: the document, and its last event.

        The state stays in the table: `leadedge reindex` can write it again.
        """
        now_ms = int(time.time() * 1000)
        records = []
        for request_id, error in rejected:
            partition = pending.emit.get(request_id, 0)
            state = self.step.merged.flushed_value(partition, request_id) or {}
            position = state.get(SOURCE) or [partition, -1]
            source = SourceRecord(
                self.topics.requests,
                int(position[0]),
                int(position[1]),
                now_ms,
                request_id.encode(),
                orjson.dumps(merged_request(state)) if state else b"",
            )
            rejection = Rejection("elasticsearch_rejected", repr(error))
            records.append(dead_letter_record(self.topics.dead_letters, source, rejection, now_ms))
        return records

    def _count(self, pending: Pending) -> None:
        for outcome, count in pending.outcomes.items():
            self._outcomes[outcome].inc(count)
        self._out_merged.inc(pending.outcomes.get("merged", 0))
        for outcome, count in pending.stats_outcomes.items():
            metrics.stats_events_total.labels(outcome).inc(count)


def changelog_records(
    table: WriteBackTable, encoded: dict[int, list[tuple[str, bytes | None]]]
) -> list[OutRecord]:
    """One changelog record per changed key, in the partition it was changed in."""
    topic = table.changelog_topic
    return [
        OutRecord(topic, partition, encode_key(key), raw)
        for partition, items in encoded.items()
        for key, raw in items
    ]
