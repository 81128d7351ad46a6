"""One list of topics: what the worker creates is what it declares to Faust."""

from __future__ import annotations

import importlib

import pytest

from leadedge.engine.topics import topic_specs
from tests.unit.leadedge.settings_env import settings_with


def test_the_topics_follow_the_settings_with_their_cleanup_and_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_with(
        monkeypatch,
        requests_topic="in",
        merged_topic="out",
        dlq_topic="bad",
        stats_topic="per-minute",
        partitions="6",
        replication_factor="3",
        stats_retention_s="3600",
    )
    topics = topic_specs(settings)
    assert [(t.name, t.partitions, t.replication_factor) for t in topics] == [
        ("in", 6, 3),
        ("out", 6, 3),
        ("bad", 6, 3),
        ("per-minute-partials", 6, 3),
        ("per-minute", 6, 3),
    ]
    assert topics.requests.config == topics.dead_letters.config == {}
    assert topics.merged.config == {"cleanup.policy": "compact"}
    assert topics.stats_partials.config == {"retention.ms": "3600000"}
    assert topics.stats.config == {"cleanup.policy": "compact,delete", "retention.ms": "3600000"}


def test_the_app_declares_exactly_the_topics_it_creates() -> None:
    # The module (the package's `app` attribute is the Faust app itself).
    app_module = importlib.import_module("leadedge.engine.app")

    declared = [
        app_module.requests_topic,
        app_module.merged_topic,
        app_module.dlq_topic,
        app_module.stats_partials_topic,
        app_module.stats_topic,
    ]
    created = list(app_module.dataflow_topics)
    assert [topic.get_topic_name() for topic in declared] == [spec.name for spec in created]
    for topic, spec in zip(declared, created, strict=True):
        assert (topic.partitions, topic.config or {}) == (spec.partitions, spec.config)
