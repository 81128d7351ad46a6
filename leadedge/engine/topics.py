"""The topics of leadedge's dataflow, in one list.

The app's declarations and the topic creation at start both read it, so the two cannot
disagree: names, partition counts and configs from the settings;
`leadedge.clients.kafka_admin` creates them and `leadedge.engine.app` declares them to Faust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from leadedge.clients.kafka_admin import TopicSpec

if TYPE_CHECKING:
    from leadedge.config import Settings


class Topics(NamedTuple):
    """Every topic the worker reads or writes, by role (iterate for all of them)."""

    # Raw events in, keyed by request id (DESIGN).
    requests: TopicSpec
    # The merged requests, compacted: the latest of each id, for `reindex` and readers.
    merged: TopicSpec
    # Refused events with their bytes and why.
    dead_letters: TopicSpec
    # Internal: each source partition's partial count of a window, keyed by window id
    # (plain: several partitions' partials share a key).
    stats_partials: TopicSpec
    # The per-minute totals (compacted: the latest of each window).
    stats: TopicSpec


def topic_specs(config: Settings) -> Topics:
    """The topics the settings name.

    The stats topics drop records older than LEADEDGE_STATS_RETENTION_S; the totals keep
    the latest record of each window until then.
    """

    def spec(name: str, **topic_config: str) -> TopicSpec:
        return TopicSpec(name, config.partitions, config.replication_factor, topic_config)

    retention = str(config.stats_retention_s * 1000)
    return Topics(
        requests=spec(config.requests_topic),
        merged=spec(config.merged_topic, **{"cleanup.policy": "compact"}),
        dead_letters=spec(config.dlq_topic),
        stats_partials=spec(f"{config.stats_topic}-partials", **{"retention.ms": retention}),
        stats=spec(
            config.stats_topic,
            **{"cleanup.policy": "compact,delete", "retention.ms": retention},
        ),
    )
