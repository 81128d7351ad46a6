"""`requests` → gzip NDJSON objects in S3, every raw record, good or bad.

The archive reads with its own consumer group and commits a partition's offset right
after each object is stored. Faust's shared group commits only offsets that every agent
has acknowledged, so archive objects could not decide where a replay starts; with a
group of its own, a restart always resumes at the first offset of an object and rewrites
it under the same name.

It has no part in the merge, so it runs in a process of its own beside the worker
(`leadedge.engine.archive_process`): parsing each record into its line, its consumer's
fetches and the gzip took about a fifth of the worker's event loop at 5,000 events/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from leadedge import health, metrics
from leadedge.config import Settings
from leadedge.engine import undecodable
from leadedge.engine.deleted_records import DeletedRecordsWatch
from leadedge.rules.archive import PartitionBuffer, hour_of
from leadedge.rules.models import SourceRecord
from leadedge.sinks.s3 import S3Sink

log = logging.getLogger(__name__)

# Backoff between attempts after the archive failed.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
# See `RawArchive.start`.
FETCH_MIN_BYTES = 1024 * 1024
FETCH_MAX_WAIT_MS = 1000


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, archive: RawArchive) -> None:
        self.archive = archive

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            await self.archive.flush(tp)
            self.archive.expected.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.archive.expect_committed(assigned)


class RawArchive:
    """Buffers each partition's raw records and stores them as one object at a time."""

    def __init__(self, settings: Settings, sink: S3Sink, client_options: dict[str, Any]) -> None:
        self.settings = settings
        self.sink = sink
        self.client_options = client_options
        self.buffers: dict[TopicPartition, PartitionBuffer] = {}
        self.consumer: AIOKafkaConsumer | None = None
        # Each partition's next offset to archive: records the broker deleted before the
        # archive read them are counted, logged and reported, as the merge's are.
        self.expected: dict[TopicPartition, int] = {}
        self.deleted = DeletedRecordsWatch(reader="archive")

    async def start(self) -> None:
        """Open the S3 client and the archive's consumer."""
        settings = self.settings
        await self.sink.start()
        # A batch the client cannot decode: a line per offset saying so, never a stop.
        undecodable.install({settings.requests_topic})
        self.consumer = AIOKafkaConsumer(
            **self.client_options,
            group_id=f"{settings.app_id}-archive",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            # Objects are stored every `archive_max_age_s` or `archive_max_bytes`: the archive
            # has no use for records the moment they arrive. The broker holds each fetch
            # until it has FETCH_MIN_BYTES (or FETCH_MAX_WAIT_MS passed), so the archive
            # reads in few large fetches instead of many small ones as records trickle in.
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(settings.session_timeout_s / 3, 1.0) * 1000),
        )
        await self.consumer.start()
        self.consumer.subscribe([settings.requests_topic], listener=_FlushOnRevoke(self))

    async def stop(self) -> None:
        """Store what is buffered, commit it, then close: a graceful stop loses nothing.

        The clients are closed even when the last store fails (S3 away at shutdown): what
        was not stored is read again from the committed offsets by the next archive.
        """
        try:
            if self.consumer is not None:
                for tp in list(self.buffers):
                    await self.flush(tp)
        finally:
            try:
                if self.consumer is not None:
                    await self.consumer.stop()
            finally:
                await self.sink.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        """Read and store until `stopping` is set; errors are reported, never raised.

        An error here (S3 refusing with 403, a missing bucket, a commit after a
        rebalance) must not stop the archive: it reports it, drops what it had not
        stored, reads again from its committed offsets, and retries with backoff.
        """
        backoff_s = RETRY_FIRST_S
        while not stopping.is_set():
            try:
                await self.consume_once()
            except Exception as exc:
                health.report_failure("archive", f"{type(exc).__name__}: {exc}")
                log.exception("archive failed; reading again from its last stored offsets")
                await self._rewind()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_MAX_S)
                continue
            if health.report_recovered("archive"):
                log.info("archive recovered")
            backoff_s = RETRY_FIRST_S

    async def consume_once(self) -> None:
        """One fetch: buffer its records, store the objects that are due."""
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=500, max_records=2000)
        for tp, messages in batches.items():
            metrics.agent_records_total.labels("archive", "in").inc(len(messages))
            if messages:
                self.deleted.fetched(tp, self.expected.get(tp), messages[0].offset)
                self.expected[tp] = messages[-1].offset + 1
            await self.add_all(tp, messages)
        await self.flush_aged()
        if self.deleted.due():
            consumer = self.consumer
            await self.deleted.check(
                {tp: self.expected[tp] for tp in consumer.assignment() if tp in self.expected},
                lambda *tps: consumer.beginning_offsets(list(tps)),
            )

    async def expect_committed(self, partitions: list[TopicPartition]) -> None:
        """Reading goes on at each partition's committed offset (none: nothing expected)."""
        assert self.consumer is not None
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            if committed is None:
                self.expected.pop(tp, None)
            else:
                self.expected[tp] = committed

    async def _rewind(self) -> None:
        """Forget every buffer and read each partition again from its committed offset."""
        self.buffers.clear()
        assert self.consumer is not None
        try:
            for tp in self.consumer.assignment():
                committed = await self.consumer.committed(tp)
                if committed is None:
                    await self.consumer.seek_to_beginning(tp)
                    self.expected.pop(tp, None)
                else:
                    self.consumer.seek(tp, committed)
                    self.expected[tp] = committed
        except Exception:
            # The group moved on (a rebalance): the next assignment sets the positions.
            log.warning("archive: could not rewind; the next assignment will", exc_info=True)

    async def add_all(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> None:
        """Buffer a partition's fetched records, rotating on the hour boundary and on size.

        One call per fetch, not per record: the loop awaits only when an object is due.
        """
        buffer = self.buffers.get(tp)
        max_bytes = self.settings.archive_max_bytes
        for message in messages:
            hour = hour_of(message.timestamp)
            if buffer is not None and buffer.hour != hour:
                await self.flush(tp)
                buffer = None
            if buffer is None:
                buffer = PartitionBuffer(
                    tp.topic, tp.partition, hour, message.offset, time.monotonic()
                )
                self.buffers[tp] = buffer
            buffer.add(
                SourceRecord(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.timestamp,
                    message.key,
                    message.value,
                    undecodable.undecodable_reason(message.headers)
                    if message.value is None
                    else None,
                )
            )
            if buffer.size >= max_bytes:
                await self.flush(tp)
                buffer = None

    async def flush_aged(self) -> None:
        """Age is checked on the wall clock, so idle partitions are stored too."""
        now = time.monotonic()
        for tp, buffer in list(self.buffers.items()):
            if now - buffer.opened_at >= self.settings.archive_max_age_s:
                await self.flush(tp)

    async def flush(self, tp: TopicPartition) -> None:
        """Store the partition's object, then commit the offset after its last record."""
        buffer = self.buffers.pop(tp, None)
        if buffer is None or not buffer.lines:
            return
        # Compressed in a thread: zlib lets go of the interpreter lock, so an object's
        # gzip (tens of milliseconds for a few MB) does not hold up the fetches.
        body = await asyncio.to_thread(buffer.body)
        await self.sink.write([(buffer.key(self.settings.s3_prefix), body)])
        metrics.agent_records_total.labels("archive", "out").inc(len(buffer.lines))
        assert self.consumer is not None
        await self.consumer.commit({tp: buffer.last_offset + 1})
