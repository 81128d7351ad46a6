"""Prometheus metrics of the worker, served at `GET /metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

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
