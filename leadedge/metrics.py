"""Prometheus metrics of the worker, served at `GET /metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

registry = CollectorRegistry(auto_describe=True)

events_total = Counter(
    "leadedge_events_total",
    "Records the merge agent handled, by outcome (merged, duplicate, dead_letter).",
    ["outcome"],
    registry=registry,
)
dead_letters_total = Counter(
    "leadedge_dead_letters_total",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=registry,
)
recovery_remaining_records = Gauge(
    "leadedge_recovery_remaining_records",
    "Changelog records still to read before the tables are recovered.",
    registry=registry,
)
recovery_in_progress = Gauge(
    "leadedge_recovery_in_progress",
    "1 while the worker recovers its tables from their changelogs.",
    registry=registry,
)


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)


sink_batch_size = Histogram(
    "leadedge_sink_batch_size",
    "Documents or records per sink write.",
    ["sink"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 5000, 20000),
    registry=registry,
)
sink_write_seconds = Histogram(
    "leadedge_sink_write_seconds",
    "Time for a sink write to be stored, retries included.",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)
sink_retries_total = Counter(
    "leadedge_sink_retries_total",
    "Transient sink failures that were retried (sink down, 429, 5xx).",
    ["sink"],
    registry=registry,
)
es_version_conflicts_total = Counter(
    "leadedge_es_version_conflicts_total",
    "Writes Elasticsearch refused because it already held a newer version (harmless).",
    registry=registry,
)
es_rejected_total = Counter(
    "leadedge_es_rejected_total",
    "Documents Elasticsearch refused for good; each went to the dead-letter topic.",
    registry=registry,
)
http_request_seconds = Histogram(
    "leadedge_http_request_seconds",
    "HTTP latency by method, route and status.",
    ["method", "route", "status"],
    registry=registry,
)
skipped_records_total = Counter(
    "leadedge_skipped_records_total",
    "Records the broker deleted (retention, delete-records) before this worker read them.",
    ["topic", "partition"],
    registry=registry,
)
component_errors_total = Counter(
    "leadedge_component_errors_total",
    "Errors a part of the worker recovered from by retrying (e.g. the archive and S3).",
    ["component"],
    registry=registry,
)
component_degraded = Gauge(
    "leadedge_component_degraded",
    "1 while a part of the worker is failing and retrying; /health names it.",
    ["component"],
    registry=registry,
)
collector_not_delivered_total = Counter(
    "leadedge_collector_not_delivered_total",
    "POST /requests answered 503 because Kafka did not acknowledge every event in time.",
    registry=registry,
)
http_refused_total = Counter(
    "leadedge_http_refused_total",
    "Calls refused before any handler ran, by reason: unauthorized (401: a missing or"
    " unknown API key), forbidden (403: a key without access to the route), body_timeout"
    " (408), body_too_large (413), too_many_connections (503).",
    ["reason"],
    registry=registry,
)
freshness_seconds = Histogram(
    "leadedge_freshness_seconds",
    "From the event time of a request's latest event to its document being indexed.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
    registry=registry,
)
consumer_lag = Gauge(
    "leadedge_consumer_lag",
    "Records not yet read, per topic partition this worker is assigned.",
    ["topic", "partition"],
    registry=registry,
)
agent_records_total = Counter(
    "leadedge_agent_records_total",
    "Records in and out of each agent (merge, index, archive).",
    ["agent", "direction"],
    registry=registry,
)

stats_events_total = Counter(
    "leadedge_stats_events_total",
    "Records the per-minute stats counted, by outcome (counted, late, skipped, failed).",
    ["outcome"],
    registry=registry,
)

changelog_records_bulk_applied_total = Counter(
    "leadedge_changelog_records_bulk_applied_total",
    "Changelog records a table recovery wrote to its store a fetch at a time.",
    registry=registry,
)
