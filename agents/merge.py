"""`requests` → the batch engine: merge, enrich, history, per-minute counts, dead letters.

Records of `requests` never take Faust's per-record stream path: the app's consumer hands
each partition's fetched records to the engine (see `leadedge.engine`), which publishes
each changed request once per flush to the table's changelog, `merged-requests` and
Elasticsearch, and only then acknowledges the offsets.
"""

from __future__ import annotations

from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TableT
from mode import Service

from leadedge.engine.app import app, requests_topic, settings, stats_partials_topic, wiring
from leadedge.engine.flush import BatchEngine, OutputTopics
from leadedge.engine.kafka_out import KafkaBatchWriter
from leadedge.engine.step import MergeStep
from leadedge.engine.write_back import MemoryPartitions, RocksDBPartitions, WriteBackTable
from leadedge.rules.stats import partial_counter_limit
from leadedge.rules.stats_state import flush_records
from leadedge.tables.merged_requests import merged_requests
from leadedge.tables.request_history import request_history
from leadedge.tables.request_stats import stats_partials


def write_back(table: TableT[Any, Any], **options: Any) -> WriteBackTable:
    """The engine's cache in front of a Faust table and its local store."""
    changelog = table.changelog_topic.get_topic_name()
    store = table.data
    partitions = (
        RocksDBPartitions(store, changelog)
        if isinstance(store, RocksDBStore)
        else MemoryPartitions(store)
    )
    return WriteBackTable(table.name, changelog, partitions, **options)


def build_engine(*, index: bool = True) -> BatchEngine:
    """The engine, from the settings; built once, when the consumer is created.

    `index` off leaves Elasticsearch out of the flush (the benchmark's sinks-off worker).
    """
    step = MergeStep(
        wiring.record_processor(),
        history_length=settings.history_length,
        stats_lateness_ms=settings.stats_lateness_s * 1000,
        max_window_counters=partial_counter_limit(settings.partitions),
        merged=write_back(merged_requests),
        history=write_back(request_history),
        partials=write_back(stats_partials, flush_plan=flush_records),
    )
    return BatchEngine(
        step,
        kafka=KafkaBatchWriter(lambda: app.producer._ensure_producer()),  # type: ignore[attr-defined]
        elasticsearch=wiring.requests_sink if index else None,
        topics=OutputTopics(
            requests=settings.requests_topic,
            merged=settings.merged_topic,
            dead_letters=settings.dlq_topic,
            stats_partials=stats_partials_topic.get_topic_name(),
        ),
        flush_interval_s=settings.flush_interval_ms / 1000,
        max_pending_records=settings.flush_max_records,
        on_fatal=app.crash,
        stats_send_interval_s=settings.stats_send_interval_ms / 1000,
    )


app.batch_topic(
    requests_topic, build_engine, tables=(merged_requests, request_history, stats_partials)
)


@app.service
class MergeEngineService(Service):
    """Runs the engine's flushes; Elasticsearch is ready before the first one."""

    @property
    def engine(self) -> BatchEngine:
        """The engine the app's consumer feeds."""
        engine = app.batch_handler(settings.requests_topic)
        assert isinstance(engine, BatchEngine)
        return engine

    async def on_start(self) -> None:
        """Create the Elasticsearch alias (waiting for Elasticsearch) before any flush."""
        await wiring.requests_sink.start()

    @Service.task
    async def _flush_on_interval_and_size(self) -> None:
        await self.engine.run()

    async def on_stop(self) -> None:
        """Close the client; the last flush ran before the consumer's last commit."""
        await wiring.requests_sink.stop()
