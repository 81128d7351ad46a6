"""A batch engine over plain dicts, with Kafka and Elasticsearch stood in by recorders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from leadedge.engine.flush import BatchEngine, OutputTopics
from leadedge.engine.kafka_out import KafkaBatchWriter, OutRecord
from leadedge.engine.step import MergeStep
from leadedge.engine.write_back import MemoryPartitions, WriteBackTable, encode_key
from leadedge.rules.enrich import Enricher
from leadedge.rules.merge import MergeRules
from leadedge.rules.processing import RecordProcessor
from leadedge.rules.stats_state import flush_records
from leadedge.sinks.elasticsearch import Document, ElasticsearchSink, WriteResult

REQUESTS = "requests"
TOPICS = OutputTopics(
    requests=REQUESTS,
    merged="merged-requests",
    dead_letters="requests-dlq",
    stats_partials="request-stats-partials",
)
MERGED_CHANGELOG = "merged_requests-changelog"
HISTORY_CHANGELOG = "request_history-changelog"
PARTIALS_CHANGELOG = "stats_partials-changelog"
# Record timestamps (ms): 2023-11-14T22:13:20Z.
NOW_MS = 1_700_000_000_000
MAX_EVENT_BYTES = 64 * 1024


def record(
    value: bytes | None,
    key: bytes | None = None,
    *,
    offset: int = 0,
    partition: int = 0,
    timestamp_ms: int = NOW_MS,
    topic: str = REQUESTS,
) -> ConsumerRecord[bytes, bytes]:
    """One fetched `requests` record, as aiokafka hands it over."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=(),
    )


def records(
    values: Iterable[bytes], key: bytes, *, first_offset: int = 0, partition: int = 0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Consecutive records of one partition, all with the same key."""
    return [
        record(value, key, offset=first_offset + number, partition=partition)
        for number, value in enumerate(values)
    ]


class RecordingKafka:
    """Stands in for `KafkaBatchWriter`: keeps every `write()` call's records.

    Offsets count up per (topic, partition); a record without a partition goes to 0.
    `fail` makes the next writes raise it; `gate`, while set, holds every write until
    it is opened.
    """

    def __init__(self) -> None:
        self.writes: list[list[OutRecord]] = []
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.next_offset: dict[tuple[str, int], int] = {}

    async def write(self, records: Iterable[OutRecord]) -> dict[tuple[str, int], int]:
        batch = list(records)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.writes.append(batch)
        reached: dict[tuple[str, int], int] = {}
        for out in batch:
            tp = (out.topic, 0 if out.partition is None else out.partition)
            offset = self.next_offset.get(tp, 0)
            self.next_offset[tp] = offset + 1
            reached[tp] = offset
        return reached

    def sent(self, topic: str) -> list[OutRecord]:
        """Every record written to `topic`, in order."""
        return [out for batch in self.writes for out in batch if out.topic == topic]

    def changelog(self, topic: str) -> list[tuple[Any, Any]]:
        """(key, value) of every changelog record of `topic`, decoded; None is a tombstone."""
        return [
            (
                orjson.loads(out.key or b"null"),
                None if out.value is None else orjson.loads(out.value),
            )
            for out in self.sent(topic)
        ]

    def published(self) -> list[tuple[bytes | None, dict[str, Any]]]:
        """(key, merged request) of every `merged-requests` record."""
        return [(out.key, orjson.loads(out.value or b"null")) for out in self.sent(TOPICS.merged)]

    def dead_letters(self) -> list[OutRecord]:
        """Every dead-letter record."""
        return self.sent(TOPICS.dead_letters)

    def partials(self) -> list[tuple[str, dict[str, Any]]]:
        """(window id, partial) of every record of the partials topic."""
        return [
            ((out.key or b"").decode(), orjson.loads(out.value or b"null"))
            for out in self.sent(TOPICS.stats_partials)
        ]


class RecordingElasticsearch:
    """Stands in for `ElasticsearchSink.write`: keeps the documents, refuses chosen ids."""

    def __init__(self, refuse: Iterable[str] = ()) -> None:
        self.batches: list[list[Document]] = []
        self.refuse = set(refuse)

    async def write(self, documents: list[Document]) -> WriteResult:
        # As Elasticsearch reads them: a document encoded already is decoded here.
        self.batches.append(
            [
                (doc_id, version, orjson.loads(doc) if isinstance(doc, bytes) else doc)
                for doc_id, version, doc in documents
            ]
        )
        return WriteResult(
            rejected=[
                (doc_id, "mapper_parsing_exception")
                for doc_id, _, _ in documents
                if doc_id in self.refuse
            ]
        )

    @property
    def documents(self) -> list[Document]:
        return [document for batch in self.batches for document in batch]


@dataclass
class Harness:
    """An engine over plain dicts, and what it did."""

    engine: BatchEngine
    kafka: RecordingKafka
    elasticsearch: RecordingElasticsearch | None
    # Table name → its local store: a plain dict of decoded keys.
    stores: dict[str, dict[str, Any]]
    acks: list[tuple[TP, int, int]] = field(default_factory=list)
    fatal: list[BaseException] = field(default_factory=list)

    @property
    def step(self) -> MergeStep:
        return self.engine.step

    @property
    def merged(self) -> dict[str, Any]:
        return self.stores["merged_requests"]

    @property
    def history(self) -> dict[str, Any]:
        return self.stores["request_history"]

    @property
    def partials(self) -> dict[str, Any]:
        return self.stores["stats_partials"]

    def handle(self, batch: list[ConsumerRecord[bytes, bytes]], first: int | None = None) -> None:
        """Hand one partition's fetched records over, as the consumer does."""
        tp = TP(batch[0].topic, batch[0].partition)
        self.engine.handle(tp, batch[0].offset if first is None else first, batch)

    async def run(self, batch: list[ConsumerRecord[bytes, bytes]]) -> bool:
        """Hand records over and flush."""
        self.handle(batch)
        return await self.engine.flush()


def build(
    *,
    elasticsearch: RecordingElasticsearch | None = None,
    enricher: Enricher | None = None,
    history_length: int = 1000,
    stats_lateness_ms: int = 300_000,
    max_pending_records: int = 10_000,
    flush_interval_s: float = 60.0,
    stats_send_interval_s: float = 60.0,
    stores: dict[str, dict[str, Any]] | None = None,
) -> Harness:
    """A `MergeStep` and `BatchEngine` as `agents.merge.build_engine` wires them."""
    stores = stores if stores is not None else {}
    for name in ("merged_requests", "request_history", "stats_partials"):
        stores.setdefault(name, {})
    processor = RecordProcessor(
        MergeRules(), enricher or Enricher(None), max_event_bytes=MAX_EVENT_BYTES
    )
    step = MergeStep(
        processor,
        history_length=history_length,
        stats_lateness_ms=stats_lateness_ms,
        merged=WriteBackTable(
            "merged_requests", MERGED_CHANGELOG, MemoryPartitions(stores["merged_requests"])
        ),
        history=WriteBackTable(
            "request_history", HISTORY_CHANGELOG, MemoryPartitions(stores["request_history"])
        ),
        partials=WriteBackTable(
            "stats_partials",
            PARTIALS_CHANGELOG,
            MemoryPartitions(stores["stats_partials"]),
            flush_plan=flush_records,
        ),
    )
    kafka = RecordingKafka()
    harness: Harness

    async def on_fatal(exc: BaseException) -> None:
        harness.fatal.append(exc)

    engine = BatchEngine(
        step,
        kafka=cast(KafkaBatchWriter, kafka),
        elasticsearch=cast(ElasticsearchSink | None, elasticsearch),
        topics=TOPICS,
        flush_interval_s=flush_interval_s,
        max_pending_records=max_pending_records,
        on_fatal=on_fatal,
        stats_send_interval_s=stats_send_interval_s,
    )
    harness = Harness(engine, kafka, elasticsearch, stores)
    engine.ack = lambda tp, first, last: harness.acks.append((tp, first, last))
    return harness


def headers(out: OutRecord) -> dict[str, bytes]:
    """A record's headers as a dict."""
    return dict(out.headers)


def key_of(request_id: str) -> bytes:
    """A table key as its changelog record carries it."""
    return encode_key(request_id)


async def eventually(condition: Any, timeout_s: float = 2.0) -> None:
    """Wait until `condition()` holds."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


class FailsOnce:
    """Stands in for `original`: its first call raises RuntimeError("boom"), later ones pass."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        return self.original(*args, **kwargs)
