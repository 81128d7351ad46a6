"""Every long-lived object of the worker, built from the settings in one place.

The app builds one `Wiring` from the settings it read once; agents, services and views
take what they need from it when they run, not at import. Each object is built on first
use and kept (`cached_property`); a test builds its own `Wiring` from its own settings,
or sets an attribute to a fake before the first use.
"""

from __future__ import annotations

from functools import cached_property

from leadedge.clients.elasticsearch import ElasticsearchConnection
from leadedge.clients.kafka import KafkaConnection
from leadedge.clients.producer import EventProducer
from leadedge.clients.stats_reader import StatsReader
from leadedge.config import Settings, s3_keys
from leadedge.gate.auth import ApiKeys
from leadedge.rules.enrich import Enricher
from leadedge.rules.merge import MergeRules
from leadedge.rules.processing import RecordProcessor
from leadedge.rules.validate import REPLAYED_TS_BYTES
from leadedge.sinks.elasticsearch import ElasticsearchSink
from leadedge.sinks.es_mapping import requests_index_from_settings
from leadedge.sinks.es_stats import stats_index_from_settings
from leadedge.sinks.s3 import S3Sink


class Wiring:
    """The worker's objects, from one `Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # Connections: how every client of the worker reaches its cluster.

    @cached_property
    def kafka(self) -> KafkaConnection:
        """Every Kafka client's connection (LEADEDGE_BROKER, LEADEDGE_KAFKA_*)."""
        return KafkaConnection.from_settings(self.settings)

    @cached_property
    def elasticsearch(self) -> ElasticsearchConnection:
        """Every Elasticsearch client's connection (LEADEDGE_ES_*)."""
        return ElasticsearchConnection.from_settings(self.settings)

    @cached_property
    def api_keys(self) -> ApiKeys:
        """The keys file (LEADEDGE_API_KEYS_FILE), read when first asked for."""
        return ApiKeys(self.settings.api_keys_file)

    # The merge.

    @cached_property
    def merge_rules(self) -> MergeRules:
        """The merge rules (counter fields, event ids kept), as the collector checks them too."""
        return MergeRules(
            counter_fields=frozenset(self.settings.counter_fields),
            max_event_ids=self.settings.max_event_ids,
        )

    def record_processor(self) -> RecordProcessor:
        """Validate, merge and enrich, with its own enrichment caches (one per engine)."""
        settings = self.settings
        enricher = Enricher.from_database(
            settings.geoip_db, settings.ipaddress_field, settings.useragent_field
        )
        # The merge takes an event a little over the limit the collector holds to:
        # `leadedge replay` adds its archived time as `ts` to an event that had none, and
        # an event the collector accepted must not be refused when it is replayed.
        max_event_bytes = settings.max_event_bytes + REPLAYED_TS_BYTES
        return RecordProcessor(
            self.merge_rules, enricher, max_event_bytes, settings.max_state_bytes
        )

    # Sinks and readers.

    @cached_property
    def requests_sink(self) -> ElasticsearchSink:
        """The merged requests' alias, written by the flush."""
        index = requests_index_from_settings(self.settings)
        return ElasticsearchSink(self.elasticsearch, index)

    @cached_property
    def stats_sink(self) -> ElasticsearchSink:
        """The per-minute windows' alias, written by the stats agent."""
        index = stats_index_from_settings(self.settings)
        return ElasticsearchSink(self.elasticsearch, index, component="stats-index")

    @cached_property
    def archive_sink(self) -> S3Sink:
        """The raw archive's bucket."""
        settings = self.settings
        access_key_id, secret_access_key = s3_keys(settings)
        return S3Sink(
            endpoint_url=settings.s3_endpoint,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            server_side_encryption=settings.s3_server_side_encryption,
        )

    @cached_property
    def stats_reader(self) -> StatsReader:
        """The report page's reader of the stats alias."""
        return StatsReader(self.elasticsearch, self.settings.stats_alias)

    @cached_property
    def collector_producer(self) -> EventProducer:
        """The collector's idempotent, acks=all producer to `requests`."""
        return EventProducer(self.kafka, self.settings.requests_topic)
