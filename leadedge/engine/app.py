"""The Faust app and its topics; agents and tables register by autodiscovery."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import faust
import mode.loop
from faust.types import ConsumerT, ProducerT, TableT, TopicT
from faust.web import Web

from leadedge.clients.elasticsearch import check_elasticsearch
from leadedge.clients.kafka import check_connection
from leadedge.clients.kafka_admin import TopicSpec, ensure_topics
from leadedge.config import Settings, get_settings
from leadedge.engine import undecodable
from leadedge.engine.changelog_flush import DrainingProducer
from leadedge.engine.intake import BatchConsumer, BatchHandler
from leadedge.engine.process import tune_garbage_collection
from leadedge.engine.table_stores import discard_after_unclean_stop, mark_clean_stop
from leadedge.engine.topics import topic_specs
from leadedge.engine.wiring import Wiring
from leadedge.exceptions import ConfigError
from leadedge.gate.server import GuardedWeb, WebLimits

log = logging.getLogger(__name__)

# uvloop runs the worker's event loop: Faust's command line creates the loop after it has
# imported the app, so the policy set here is the one it uses.
mode.loop.use("uvloop")
tune_garbage_collection()

# The settings, read once, and every object built from them (see `leadedge.engine.wiring`).
wiring = Wiring(get_settings())
settings = wiring.settings
kafka = wiring.kafka
elasticsearch = wiring.elasticsearch
# Read here, not in a view module: an error in an autodiscovered module only logs a
# warning, and a bad keys file must stop the worker with a message naming the variable.
api_keys = wiring.api_keys


class LeadEdgeApp(faust.App):
    """The Faust app, plus the topics it owns created before its consumer starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_factories: dict[str, Callable[[], BatchHandler]] = {}
        self._batch_handlers: dict[str, BatchHandler] = {}
        # Tables written only through the batch engine (see `batch_topic`).
        self.engine_tables: set[str] = set()

    def batch_topic(
        self,
        topic: TopicT,
        factory: Callable[[], BatchHandler],
        tables: Iterable[TableT[Any, Any]] = (),
    ) -> None:
        """Subscribe `topic` and hand its records, a fetch at a time, to `factory()`'s handler.

        The handler is built once, when first asked for (by the consumer, or by a
        service that runs it); see `leadedge.engine`. `tables` are the tables it writes
        through the engine, whose local stores never run ahead of their changelogs: they
        are kept after a crash (see `leadedge.engine.table_stores`).
        """
        self.engine_tables |= {table.name for table in tables}
        self.topics.add(topic)
        for name in topic.topics:
            self._batch_factories[name] = factory

    def batch_handler(self, topic_name: str) -> BatchHandler:
        """The handler of a batch topic, built on first use."""
        handler = self._batch_handlers.get(topic_name)
        if handler is None:
            handler = self._batch_handlers[topic_name] = self._batch_factories[topic_name]()
        return handler

    def _new_consumer(self) -> ConsumerT:
        if self.conf.broker[0].scheme != "kafka":
            return super()._new_consumer()
        consumer = BatchConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
        for name in self._batch_factories:
            consumer.add_batch_handler(name, self.batch_handler(name))
        # A batch the client cannot decode becomes dead letters, not a stopped partition.
        undecodable.install(set(self._batch_factories))
        return consumer

    async def on_first_start(self) -> None:
        """Create missing topics first: Faust creates only its internal ones.

        Local table stores left by a crash are removed before any is opened, so the
        tables are rebuilt from their changelogs (see `leadedge.engine.table_stores`). A login
        Kafka or Elasticsearch refuses stops the worker here, with an error naming the
        variables.
        """
        if self.conf.broker[0].scheme == "kafka":
            await check_connection(kafka)
        await check_elasticsearch(elasticsearch)
        check_s3_credentials(settings)
        await super().on_first_start()
        if self._keeps_local_stores:
            discarded = discard_after_unclean_stop(
                self.conf.tabledir, keep=frozenset(self.engine_tables)
            )
            if discarded:
                log.warning(
                    "The last stop was not clean: rebuilding %d local table stores from "
                    "their changelogs",
                    len(discarded),
                )
        if self.conf.broker[0].scheme == "kafka":
            await ensure_topics(kafka, list(dataflow_topics))

    async def on_stop(self) -> None:
        """Bound the stop: with Kafka, Elasticsearch or S3 down it could wait for ever.

        After LEADEDGE_SHUTDOWN_TIMEOUT_S the process exits (status 1) whatever is still
        waiting; what was not stored is read again from the committed offsets.
        """
        arm_shutdown_deadline(settings.shutdown_timeout_s)
        await super().on_stop()

    async def on_shutdown(self) -> None:
        """Mark the local stores trustworthy when every changelog record reached Kafka."""
        await super().on_shutdown()
        producer = self._producer
        if self._keeps_local_stores and isinstance(producer, DrainingProducer):
            flushed = all(handler.all_delivered for handler in self._batch_handlers.values())
            if producer.all_delivered and flushed:
                mark_clean_stop(self.conf.tabledir)
            else:
                log.warning("Changelog records were not all delivered: next start rebuilds")

    @property
    def _keeps_local_stores(self) -> bool:
        return self.conf.store.scheme == "rocksdb"

    def _new_web(self) -> Web:
        # Faust's own pages are not served; every route is behind the API key check.
        return GuardedWeb(self, keys=api_keys, limits=WebLimits.from_settings(settings))

    def _new_producer(self) -> ProducerT:
        # Offsets are committed after a flush: it must not return with changelog
        # records still buffered (see `leadedge.engine.changelog_flush`).
        if self.conf.broker[0].scheme == "kafka":
            return DrainingProducer(self.transport, loop=self.loop, beacon=self.beacon)
        return super()._new_producer()


_shutdown_deadline: threading.Timer | None = None


def check_s3_credentials(config: Settings) -> None:
    """Without keys set, boto3's chain must find some: else the archive would retry for ever."""
    if config.s3_access_key_id is not None:
        return
    import boto3  # its credential chain; only when no keys are set

    if boto3.Session().get_credentials() is None:
        msg = (
            "no S3 credentials: set LEADEDGE_S3_ACCESS_KEY_ID and LEADEDGE_S3_SECRET_ACCESS_KEY, "
            "or give boto3 its own (AWS_* variables, a profile, an instance or task role)"
        )
        raise ConfigError(msg)


def arm_shutdown_deadline(timeout_s: float) -> None:
    """Exit the process `timeout_s` from now unless it has exited by then (once)."""
    global _shutdown_deadline
    if _shutdown_deadline is not None:
        return

    def give_up() -> None:
        log.error(
            "LEADEDGE_SHUTDOWN_TIMEOUT_S: the stop took over %.0f s (Kafka, Elasticsearch or "
            "S3 not answering); exiting now, the next start reads again from the committed "
            "offsets",
            timeout_s,
        )
        logging.shutdown()
        os._exit(1)

    # A thread, not a task: the event loop may be what is stuck.
    _shutdown_deadline = threading.Timer(timeout_s, give_up)
    _shutdown_deadline.daemon = True
    _shutdown_deadline.start()


app = LeadEdgeApp(
    settings.app_id,
    broker=settings.broker,
    broker_credentials=kafka.faust_credentials(),
    store=settings.store,
    autodiscover=["leadedge.agents", "leadedge.tables", "leadedge.web"],
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    topic_allow_declare=True,
    web_port=settings.web_port,
    web_bind=settings.web_bind,
    # Faust's table, router, statistics and graph pages would serve any project's state
    # without a key: off (and not mounted at all, see `leadedge.gate.server`).
    web_tables_enabled=False,
    web_router_enabled=False,
    web_stats_enabled=False,
    web_graph_enabled=False,
    web_metrics_enabled=False,
    # The address other workers use to forward a lookup to the owner of an id.
    web_host=settings.web_host,
    # Tables keep JSON; the topics below override this with raw bytes.
    key_serializer="json",
    value_serializer="json",
    # Every record the merge writes must survive a broker failover before it is acked.
    producer_acks=-1,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=max(settings.session_timeout_s / 3, 1.0),
    # A new consumer group starts at the beginning: no event already in the topic is skipped.
    consumer_auto_offset_reset="earliest",
    # Offsets are acknowledged once per flush: commit them every second, so a restart
    # reads little again.
    broker_commit_interval=1.0,
    # Bounded fetches: a fetch is applied in slices, but one of the whole buffer could
    # hold many seconds of work.
    broker_max_poll_records=2000,
    # The batch engine sends a flush's records in batches: fewer, larger produce requests.
    producer_max_batch_size=512 * 1024,
)

# Every topic is raw bytes: the merge agent validates records itself, so a bad one is
# routed to the dead-letter topic with its original bytes instead of crashing a
# deserializer; the stats agents decode their own records too.
dataflow_topics = topic_specs(settings)


def _declare(spec: TopicSpec) -> TopicT:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        config=spec.config or None,
    )


requests_topic = _declare(dataflow_topics.requests)
merged_topic = _declare(dataflow_topics.merged)
dlq_topic = _declare(dataflow_topics.dead_letters)
# Per-minute aggregates: partial counts keyed by window id, and the published totals.
stats_partials_topic = _declare(dataflow_topics.stats_partials)
stats_topic = _declare(dataflow_topics.stats)
