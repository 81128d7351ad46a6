"""Every object the worker runs is built from the one Settings it is given, on first use."""

from __future__ import annotations

import orjson
import pytest

from leadedge.engine.wiring import Wiring
from leadedge.rules.models import Rejection, SourceRecord
from leadedge.rules.processing import Merged
from tests.unit.leadedge.settings_env import settings_with


def test_each_sink_writes_where_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    wiring = Wiring(
        settings_with(
            monkeypatch,
            es_alias="shop-requests",
            stats_alias="shop-stats",
            es_refresh_interval="5s",
            es_shards="3",
            es_replicas="1",
            ipaddress_field="ip",
            s3_bucket="shop-archive",
            s3_server_side_encryption="aws:kms",
        )
    )
    requests = wiring.requests_sink
    assert requests.alias == "shop-requests" and requests.component == "elasticsearch"
    settings = requests.index.template["template"]["settings"]
    assert (settings["number_of_shards"], settings["refresh_interval"]) == (3, "5s")
    assert "ip" in requests.index.template["template"]["mappings"]["runtime"]
    assert requests.index.live_settings == {"refresh_interval": "5s", "number_of_replicas": 1}
    stats = wiring.stats_sink
    assert (stats.alias, stats.component) == ("shop-stats", "stats-index")
    assert stats.index.template["index_patterns"] == ["shop-stats-*"]
    archive = wiring.archive_sink
    assert (archive.bucket, archive.server_side_encryption) == ("shop-archive", "aws:kms")
    assert wiring.stats_reader.alias == "shop-stats"


def test_the_collector_checks_events_with_the_rules_the_merge_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wiring = Wiring(settings_with(monkeypatch, counter_fields="clicks,views", max_event_ids="7"))
    processor = wiring.record_processor()
    assert wiring.merge_rules.counter_fields == frozenset({"clicks", "views"})
    assert processor.rules is wiring.merge_rules
    assert wiring.collector_producer.topic == wiring.settings.requests_topic


def test_an_event_the_collector_took_is_merged_when_replay_adds_its_ts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wiring = Wiring(settings_with(monkeypatch, max_event_bytes="1000"))
    processor = wiring.record_processor()
    event = {"id": "r", "pad": ""}
    event["pad"] = "x" * (1000 - len(orjson.dumps(event)))
    assert len(orjson.dumps(event)) == 1000  # the most the collector takes
    replayed = orjson.dumps({**event, "ts": 1_767_225_600_000})
    record = SourceRecord("requests", 0, 0, 1_767_225_600_000, b"r", replayed)
    assert isinstance(processor.process(record, lambda key: None), Merged)
    too_large = SourceRecord("requests", 0, 1, 0, b"r", replayed + b" " * 32)
    outcome = processor.process(too_large, lambda key: None)
    assert isinstance(outcome, Rejection) and outcome.reason == "too_large"


def test_objects_are_built_once_and_only_when_first_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # A keys file that does not exist: nothing reads it until the keys are asked for.
    wiring = Wiring(settings_with(monkeypatch, api_keys_file="/nonexistent/keys.json"))
    assert wiring.requests_sink is wiring.requests_sink
    assert "api_keys" not in vars(wiring)
