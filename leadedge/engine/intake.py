"""A Faust consumer that hands the batch topics' records over a whole fetch at a time.

Faust's `Consumer.getmany` turns every fetched record into a message, and its fetcher
delivers each one to a stream and waits for its ack. For the topics a batch handler
owns, this consumer instead gives each partition's fetched records, as a list, to the
handler right after the fetch, and the handler acknowledges them in bulk (`ack_range`)
through the same acked-offset bookkeeping `Consumer.ack` keeps, once they are stored.
Every other topic takes Faust's ordinary path, except the changelog records a table
recovery reads, which are written to their stores a fetch at a time too
(`leadedge.engine.changelog_recovery`).

It relies on these internals of faust-streaming 0.15 (pinned in `pyproject.toml`, and
checked by `tests/unit/leadedge/engine/test_faust_contract.py`): `_wait_next_records`,
`_read_offset`, `_committed_offset`, `_acked`, `_acked_index`, `_n_acked`,
`_active_partitions`, `_buffered_partitions`, `ack_lock`, and `getmany`'s round-robin
over the other topics' records; and aiokafka's `_fetch_max_wait_ms`, which Faust sets to
1.5 s (see `BatchConsumerThread`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from leadedge.engine.changelog_recovery import ChangelogBatches
from leadedge.engine.deleted_records import DeletedRecordsWatch

log = logging.getLogger(__name__)


class BatchHandler(Protocol):
    """What the consumer needs of whoever takes a topic's records in batches."""

    # Set by the consumer: acknowledges offsets first..last of a partition in bulk.
    ack: Callable[[TP, int, int], Any] | None

    def handle(self, tp: TP, first_offset: int, records: Sequence[Any]) -> None:
        """Apply records now (no await between the fetch and this call)."""
        ...

    async def wait_for_room(self) -> None:
        """Return once more records may be handed over (backpressure)."""
        ...

    async def flush(self) -> bool:
        """Store and acknowledge everything handed over so far."""
        ...

    def drop(self, tps: set[TP]) -> None:
        """Forget unflushed records of revoked partitions."""
        ...

    def activate(self, tps: set[TP]) -> None:
        """The topic's partitions being read now, their tables recovered."""
        ...

    @property
    def all_delivered(self) -> bool:
        """True when everything handed over is stored (a clean stop)."""
        ...


class BatchConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with fetches the broker holds for a short time only.

    aiokafka sends one fetch at a time to a broker, for the partitions that hold no
    fetched records yet. When that fetch names only quiet partitions (the stats topic,
    or partitions just emptied), the broker holds it until data arrives or
    `fetch_max_wait_ms` passes, and the `requests` partitions wait behind it. Faust sets
    1.5 s: at 2,000 events/s records reached the merge about 0.9 s after they were
    produced (the stats partials, sent once a second, ended each wait); with 100 ms, 85 ms
    after on average. A fetch waits for `fetch_min_bytes` within that time, so a
    busy worker takes records in batches of a few hundred rather than a few. The price is
    paid idle: 20 empty fetches a second took an idle worker from 2.4% to 5.8% of a core
    (100 ms: 4.2%, with no freshness difference measurable through run-to-run noise).
    """

    fetch_max_wait_ms: int = 50
    fetch_min_bytes: int = 64 * 1024

    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by `AIOKafkaConsumer.start` when it builds its fetcher.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        consumer._fetch_min_bytes = self.fetch_min_bytes
        return consumer


class BatchConsumer(Consumer):
    """The aiokafka driver's consumer, with batch delivery for registered topics."""

    # How long a revocation waits for the flush of what was read; past it, unflushed
    # records are dropped and read again by the partition's next owner.
    revoke_flush_timeout_s: float = 10.0
    # How long a stopping worker waits for its last flush.
    stop_flush_timeout_s: float = 60.0
    # Records applied between two turns of the event loop (a few tens of milliseconds).
    slice_records: int = 200

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        # The offset after the last record handed over, per partition; see
        # `leadedge.engine.deleted_records` for what it is compared with.
        self._next_offset: dict[TP, int] = {}
        self.deleted_records = DeletedRecordsWatch()
        # Partitions whose revocation has begun: none of their records is applied from
        # then on, so no flush after the revocation's own can hold any of their work.
        self._revoking: set[TP] = set()
        # Recovering tables' changelog records, written to their stores a fetch at a time.
        self.changelog_batches = ChangelogBatches(self.app)

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def add_batch_handler(self, topic: str, handler: BatchHandler) -> None:
        """Deliver `topic`'s records to `handler` in batches from now on."""
        handler.ack = self.ack_range
        self.batch_handlers[topic] = handler

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> AsyncIterator[tuple[TP, Message]]:
        """Hand batch topics' records over per partition; yield the others one by one."""
        if not self.batch_handlers:
            async for item in super().getmany(timeout):
                yield item
            return
        # Taken before the fetch: a batch is applied only if no rebalance completed while
        # it was fetched (the records of a partition revoked meanwhile are read again
        # from the committed offset, where every assignment seeks to).
        fetched_in = self.app.consumer_generation_id
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        # Taken after it, for the other topics, as Faust's own `getmany` does: changelog
        # records a table recovery is waiting for must not be dropped.
        generation_id = self.app.consumer_generation_id
        if not self.flow_active:
            # Faust's own answer to a fetch while flow is stopped (a rebalance), as Faust
            # gives it: a seek that fails is logged, not raised. It fails when the
            # assignment changes under it (aiokafka seeks each partition after awaiting
            # its committed offset: `IllegalStateError` for one revoked meanwhile), and
            # raised it stopped the worker; the next assignment seeks again.
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seek to the committed offsets while flow is stopped: %r", exc)
            return
        if active_partitions:
            for topic, reader in self.batch_handlers.items():
                reader.activate(
                    {
                        tp
                        for tp in active_partitions
                        if tp.topic == topic and self._still_ours(tp, fetched_in)
                    }
                )
        others: dict[TP, list[Any]] = {}
        for tp, batch in records.items():
            handler = self.batch_handlers.get(tp.topic)
            if handler is None:
                left = await self.changelog_batches.take(tp, batch, self._to_message)
                if left:
                    others[tp] = left
                continue
            # In slices, letting the loop run between them: a whole fetch at a time would
            # hold up the flushes, the web server and the heartbeats for seconds.
            for start in range(0, len(batch), self.slice_records):
                if not self._still_ours(tp, fetched_in):
                    break
                self._handle_batch(handler, tp, batch[start : start + self.slice_records])
                await handler.wait_for_room()
                await asyncio.sleep(0)
        if self.deleted_records.due():
            await self.deleted_records.check(self._expected_offsets(), self.earliest_offsets)
        if others:
            async for item in self._yield_messages(others, active_partitions, generation_id):
                yield item

    def _expected_offsets(self) -> dict[TP, int]:
        """Each assigned batch-topic partition's next offset to read, where known."""
        expected = {}
        for tp in self.assignment():
            if tp.topic not in self.batch_handlers:
                continue
            next_offset = self._next_offset.get(tp, self._committed_offset.get(tp))
            if next_offset is not None:
                expected[tp] = next_offset
        return expected

    def _still_ours(self, tp: TP, generation_id: int) -> bool:
        # A fetch that overlapped a rebalance may hold records of a partition that was
        # revoked meanwhile: never apply them after the revocation.
        if self.app.consumer_generation_id != generation_id or tp in self._revoking:
            return False
        active = self._active_partitions
        return active is None or tp in active or tp in self._buffered_partitions

    def _handle_batch(self, handler: BatchHandler, tp: TP, batch: list[Any]) -> None:
        first = batch[0].offset
        read = self._read_offset.get(tp)
        if read is None:
            committed = self._committed_offset.get(tp)
            start = committed if committed is not None and committed <= first else first
        else:
            # Faust starts `_read_offset` at the committed offset (the next to read).
            start = min(read + 1, first)
        self.deleted_records.fetched(
            tp, self._next_offset.get(tp, self._committed_offset.get(tp)), first
        )
        self._next_offset[tp] = batch[-1].offset + 1
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        handler.handle(tp, start, batch)
        self._read_offset[tp] = batch[-1].offset

    async def _yield_messages(
        self, records: dict[TP, list[Any]], active_partitions: set[TP] | None, generation_id: int
    ) -> AsyncIterator[tuple[TP, Message]]:
        # Faust's `getmany` loop, for the records of the other topics.
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
        # Keep the async generator shape even when nothing is yielded.
        await asyncio.sleep(0)

    def ack_range(self, tp: TP, first: int, last: int) -> int:
        """Acknowledge offsets `first`..`last` of `tp` at once; returns how many were new.

        The bulk form of `Consumer.ack`: the next commit may include them.
        """
        with ack_lock:
            committed = self._committed_offset.get(tp)
            if committed is not None:
                first = max(first, committed)
            if first > last:
                return 0
            index = self._acked_index[tp]
            fresh = [offset for offset in range(first, last + 1) if offset not in index]
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)
            notify(self._waiting_for_ack)
            return len(fresh)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Flush and commit what was read of revoked partitions before Faust forgets it.

        From here on no record of `revoked` is applied (a fetch may still be handed over
        in slices meanwhile): a flush that began after the one below could otherwise
        carry their work past the revocation, to a changelog the next owner writes too.
        """
        self._revoking |= revoked
        for topic, handler in self.batch_handlers.items():
            mine = {tp for tp in revoked if tp.topic == topic}
            if not mine:
                continue
            try:
                # Shielded: a flush cut off half way would leave its caches half written.
                flushed = await asyncio.wait_for(
                    asyncio.shield(handler.flush()), self.revoke_flush_timeout_s
                )
            except TimeoutError:
                flushed = False
                log.warning(
                    "flush before revoking %d partitions of %s took over %.0f s: their "
                    "unflushed records will be read again",
                    len(mine),
                    topic,
                    self.revoke_flush_timeout_s,
                )
            if flushed:
                await self.commit(mine)
            handler.drop(mine)
        for tp in revoked:
            # A later assignment starts from the committed offset.
            self._next_offset.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Partitions assigned (again) are applied again."""
        self._revoking -= assigned
        await super().on_partitions_assigned(assigned, generation_id)

    async def commit_and_end_transactions(self) -> None:
        """Before the last commit of a stop, flush the batch topics.

        Revocations flush in `on_partitions_revoked`, before Faust forgets their offsets.
        """
        stopping = self.app.should_stop
        for topic, handler in self.batch_handlers.items():
            if not stopping:
                break
            try:
                await asyncio.wait_for(asyncio.shield(handler.flush()), self.stop_flush_timeout_s)
            except TimeoutError:
                log.warning(
                    "the last flush of %s did not finish: its records are read again", topic
                )
        await super().commit_and_end_transactions()
