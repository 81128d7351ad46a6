"""The topics of the per-minute aggregates (agents/stats.py), created with the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leadedge.kafka_admin import TopicSpec

if TYPE_CHECKING:
    from leadedge.config import Settings


def stats_partials_topic_name(config: Settings) -> str:
    """Internal: each source partition's partial count of a window, keyed by window id."""
    return f"{config.stats_topic}-partials"


def stats_topic_specs(config: Settings) -> list[TopicSpec]:
    """Partials (plain: several partitions' partials share a key) and the totals (compacted).

    Both drop records older than LEADEDGE_STATS_RETENTION_S; the totals keep the latest
    record of each window until then.
    """
    retention = str(config.stats_retention_s * 1000)
    return [
        TopicSpec(
            stats_partials_topic_name(config),
            config.partitions,
            config.replication_factor,
            {"retention.ms": retention},
        ),
        TopicSpec(
            config.stats_topic,
            config.partitions,
            config.replication_factor,
            {"cleanup.policy": "compact,delete", "retention.ms": retention},
        ),
    ]
