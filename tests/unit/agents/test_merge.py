"""`requests` through the batch engine: the table, `merged-requests` and the dead letters.

Records are handed over as the app's consumer hands them (a partition's fetch at a time)
to an engine wired like `leadedge.agents.merge.build_engine`, over plain-dict stores, with Kafka
and Elasticsearch recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import maxminddb
import orjson
import pytest
from faust.types import TP

import leadedge.agents.merge
from leadedge import metrics
from leadedge.engine.app import app, requests_topic, settings, stats_partials_topic
from leadedge.engine.flush import BatchEngine, OutputTopics
from leadedge.engine.kafka_out import KafkaBatchWriter
from leadedge.engine.write_back import MemoryPartitions
from leadedge.rules.enrich import Enricher
from leadedge.rules.history import CHUNK_SIZE, chunk_key, open_entries
from leadedge.rules.stats_state import flush_records
from leadedge.tables.merged_requests import merged_requests
from leadedge.tables.request_history import request_history
from leadedge.tables.request_stats import stats_partials
from tests.unit.leadedge.engine.fakes import (
    HISTORY_CHANGELOG,
    MERGED_CHANGELOG,
    REQUESTS,
    FailsOnce,
    Harness,
    RecordingElasticsearch,
    RecordingKafka,
    build,
    headers,
    key_of,
    record,
    records,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture()
def merge() -> Harness:
    return build(elasticsearch=RecordingElasticsearch())


async def test_events_merge_into_the_table_and_the_merged_topic(merge: Harness) -> None:
    assert await merge.run(
        records([b'{"id":"m1","clicks":"+1","price":2.45}', b'{"id":"m1","clicks":"+3"}'], b"m1")
    )
    assert merge.merged["m1"]["clicks"] == 4
    assert merge.merged["m1"]["price"] == 2.45
    [(key, published)] = merge.kafka.published()
    assert key == b"m1"
    assert (published["clicks"], published["event_count"]) == (4, 2)
    assert not any(name.startswith("_") for name in published)
    [changelog] = merge.kafka.sent(MERGED_CHANGELOG)
    assert changelog.key == key_of("m1")
    assert orjson.loads(changelog.value or b"") == merge.merged["m1"]
    assert merge.elasticsearch is not None
    assert merge.elasticsearch.documents == [("m1", 2, published)]
    assert merge.kafka.dead_letters() == []
    assert merge.acks == [(TP(REQUESTS, 0), 0, 1)]


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff", b"x", "not_utf8"),
        (b"{", b"x", "not_json"),
        (b'"text"', b"x", "not_object"),
        (b'{"v":1}', b"x", "missing_id"),
        (b'{"id":""}', b"", "empty_id"),
        (b'{"id":false}', b"x", "id_type"),
        (b'{"id":"x","geo":{}}', b"x", "reserved_field"),
        (b'{"id":"x","_v":1}', b"x", "underscore_field"),
        (b'{"id":"x","v":NaN}', b"x", "non_finite_number"),
        (b'{"id":"y"}', b"x", "key_mismatch"),
        (b'{"id":"' + b"z" * 257 + b'"}', b"z" * 257, "id_too_long"),
        (b'{"id":"x","d":' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}", b"x", "too_deep"),
        (b'{"id":"x","pad":"' + b"p" * 70_000 + b'"}', b"x", "too_large"),
        (b'{"id":"x","ts":"soon"}', b"x", "bad_ts"),
        (b'{"id":"x","project":""}', b"x", "bad_project"),
        (b'{"id":"x","event_id":[1]}', b"x", "bad_event_id"),
        (b"", b"x", "not_json"),
    ],
)
async def test_every_bad_event_goes_to_the_dead_letter_topic_with_its_bytes_and_reason(
    merge: Harness, value: bytes, key: bytes, reason: str
) -> None:
    assert await merge.run(
        [
            record(value, key, offset=12, partition=3),
            record(b'{"id":"ok","n":"+1"}', b"ok", offset=13, partition=3),  # it keeps going
        ]
    )
    [dead] = merge.kafka.dead_letters()
    assert dead.key == key
    assert dead.value == value
    found = headers(dead)
    assert found["leadedge.error.reason"] == reason.encode()
    assert found["leadedge.error.topic"] == REQUESTS.encode()
    assert found["leadedge.error.partition"] == b"3"
    assert found["leadedge.error.offset"] == b"12"
    assert {"leadedge.error.time", "leadedge.error.detail"} <= found.keys()
    assert merge.merged["ok"]["n"] == 1
    assert [key for key, _ in merge.kafka.published()] == [b"ok"]
    assert merge.acks == [(TP(REQUESTS, 3), 12, 13)]  # a dead letter is acknowledged too


async def test_an_object_sent_onto_a_scalar_is_a_type_conflict(merge: Harness) -> None:
    assert await merge.run(records([b'{"id":"s","a":1}', b'{"id":"s","a":{"b":1}}'], b"s"))
    assert merge.merged["s"]["a"] == 1
    [dead] = merge.kafka.dead_letters()
    assert headers(dead)["leadedge.error.reason"] == b"type_conflict"
    assert dead.value == b'{"id":"s","a":{"b":1}}'


async def test_two_projects_keep_their_own_request_under_the_same_id(merge: Harness) -> None:
    assert await merge.run(
        records(
            [
                b'{"id":"p","n":"+1","domain":"d.example"}',
                b'{"id":"p","project":"a","n":"+2"}',
                b'{"id":"p","project":"b","n":"+3"}',
                b'{"id":"p","project":"a","n":"+4"}',
            ],
            b"p",
        )
    )
    assert merge.merged["p"]["n"] == 1  # project default: keyed by the id alone
    assert (merge.merged["a\x1fp"]["n"], merge.merged["a\x1fp"]["project"]) == (6, "a")
    assert (merge.merged["b\x1fp"]["n"], merge.merged["b\x1fp"]["id"]) == (3, "p")
    assert merge.kafka.dead_letters() == []
    emitted = {out.key for out in merge.kafka.sent("merged-requests")}
    assert emitted == {b"p", b"a\x1fp", b"b\x1fp"}


async def test_a_type_conflict_rejects_the_whole_event(merge: Harness) -> None:
    assert await merge.run(
        records([b'{"id":"t","a":"text","b":1}', b'{"id":"t","b":"+1","a":"+1"}'], b"t")
    )
    assert merge.merged["t"]["b"] == 1
    [dead] = merge.kafka.dead_letters()
    assert headers(dead)["leadedge.error.reason"] == b"type_conflict"


async def test_an_internal_error_goes_to_the_dead_letters_and_the_merge_keeps_going(
    merge: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = FailsOnce(merge.step.processor.process_event)
    monkeypatch.setattr(merge.step.processor, "process_event", broken)
    assert await merge.run(
        [record(b'{"id":"i1"}', b"i1", offset=0), record(b'{"id":"i2"}', b"i2", offset=1)]
    )
    [dead] = merge.kafka.dead_letters()
    assert (dead.key, dead.value) == (b"i1", b'{"id":"i1"}')
    assert headers(dead)["leadedge.error.reason"] == b"internal_error"
    assert b"boom" in headers(dead)["leadedge.error.detail"]
    assert set(merge.merged) == {"i2"}
    assert merge.acks == [(TP(REQUESTS, 0), 0, 1)]


async def test_a_redelivered_record_changes_nothing_and_publishes_the_state_again(
    merge: Harness,
) -> None:
    batch = records([b'{"id":"r","n":"+1"}', b'{"id":"r","n":"+1"}'], b"r")
    assert await merge.run(batch)
    stored = dict(merge.merged["r"])
    assert await merge.run(batch)  # read again after a crash before the commit
    assert merge.merged["r"] == stored and stored["n"] == 2
    assert [key for key, _ in merge.kafka.changelog(MERGED_CHANGELOG)] == ["r"]
    assert [request["n"] for _, request in merge.kafka.published()] == [2, 2]
    assert merge.elasticsearch is not None
    assert [(doc_id, version) for doc_id, version, _ in merge.elasticsearch.documents] == [
        ("r", 2),
        ("r", 2),
    ]
    assert merge.kafka.dead_letters() == []


async def test_applied_events_are_kept_in_the_history_in_order(merge: Harness) -> None:
    assert await merge.run(
        records(
            [
                b'{"id":"h","clicks":"+1","event_id":"e1"}',
                b'{"id":"h","clicks":"+1","event_id":"e1"}',  # a resend
                b'{"id":"h","clicks":"+2"}',
            ],
            b"h",
        )
    )
    events = open_entries(merge.merged["h"])
    assert [e["fields"] for e in events] == [{"clicks": "+1"}, {"clicks": "+2"}]
    assert [(e["partition"], e["offset"]) for e in events] == [(0, 0), (0, 2)]
    assert events[0]["event_id"] == "e1"
    assert merge.merged["h"]["clicks"] == 3


async def test_a_full_history_chunk_moves_to_the_history_table(merge: Harness) -> None:
    values = [b'{"id":"c","n":"+1","i":%d}' % number for number in range(CHUNK_SIZE + 1)]
    assert await merge.run(records(values, b"c"))
    stored = merge.history[chunk_key("c", 0)]
    assert [e["fields"]["i"] for e in stored] == list(range(CHUNK_SIZE))
    assert [e["fields"]["i"] for e in open_entries(merge.merged["c"])] == [CHUNK_SIZE]
    [(key, chunk)] = merge.kafka.changelog(HISTORY_CHANGELOG)
    assert (key, chunk) == (chunk_key("c", 0), stored)


async def test_merged_requests_are_enriched_with_geo_and_user_agent(city_db: Path) -> None:
    merge = build(enricher=Enricher(maxminddb.open_database(str(city_db))))
    event = orjson.dumps({"id": "g", "ipaddress": "81.2.69.142", "useragent": CHROME})
    assert await merge.run(records([event], b"g"))
    [(_, published)] = merge.kafka.published()
    assert published["geo"]["city_name"] == "London"
    assert published["user_agent"]["name"] == "Chrome"
    assert merge.merged["g"]["geo"] == published["geo"]


async def test_dead_letters_are_counted_by_reason(merge: Harness) -> None:
    counter = metrics.dead_letters_total.labels("not_object")
    before = counter._value.get()
    assert await merge.run(records([b"[1]", b"[2]"], b"x"))
    assert counter._value.get() == before + 2
    assert 'leadedge_dead_letters_total{reason="not_object"}' in metrics.exposition().decode()


@pytest.fixture()
def wired() -> Iterator[BatchEngine]:
    """The engine `agents.merge` builds, writing to a recorder instead of Kafka."""
    engine = leadedge.agents.merge.build_engine()
    engine.kafka = RecordingKafka()  # type: ignore[assignment]
    engine.elasticsearch = None
    yield engine
    for table in (merged_requests, request_history, stats_partials):
        table.data.clear()


def test_the_engine_is_wired_to_the_apps_tables_topics_and_settings(wired: BatchEngine) -> None:
    assert wired.topics == OutputTopics(
        requests=settings.requests_topic,
        merged=settings.merged_topic,
        dead_letters=settings.dlq_topic,
        stats_partials=stats_partials_topic.get_topic_name(),
    )
    step = wired.step
    for cache, table in zip(
        step.tables, (request_history, stats_partials, merged_requests), strict=True
    ):
        assert cache.name == table.name
        assert cache.changelog_topic == table.changelog_topic.get_topic_name()
        assert isinstance(cache.store, MemoryPartitions)  # LEADEDGE_STORE=memory://
        assert cache.store.data is table.data
    assert step.partials.flush_plan is flush_records
    assert step.merged.flush_plan is None
    assert step.history.flush_plan is None
    assert step.history_length == settings.history_length
    assert step.stats_lateness_ms == settings.stats_lateness_s * 1000
    assert wired.flush_interval_s == settings.flush_interval_ms / 1000
    assert wired.max_pending_records == settings.flush_max_records
    assert wired.on_fatal == app.crash
    assert isinstance(leadedge.agents.merge.build_engine().kafka, KafkaBatchWriter)
    assert (
        leadedge.agents.merge.build_engine().elasticsearch
        is leadedge.agents.merge.wiring.requests_sink
    )
    assert leadedge.agents.merge.build_engine(index=False).elasticsearch is None


async def test_a_flushed_request_is_readable_through_the_faust_table(wired: BatchEngine) -> None:
    tp = TP(settings.requests_topic, 0)
    wired.handle(tp, 0, [record(b'{"id":"w","n":"+1"}', b"w", topic=settings.requests_topic)])
    assert merged_requests.get("w") is None
    assert await wired.flush()
    assert merged_requests["w"]["n"] == 1


def test_the_requests_topic_is_handed_to_the_engine_and_every_table_and_page_registered() -> None:
    app.discover()
    assert isinstance(app.batch_handler(settings.requests_topic), BatchEngine)
    assert requests_topic in app.topics  # subscribed
    assert not any(name.startswith("leadedge.agents.merge.") for name in app.agents)
    assert {"merged_requests", "request_history", "stats_partials"} <= set(app.tables)
    web: Any = app.web
    paths = {view.view_path for view in web.views.values()} if hasattr(web, "views") else set()
    routes = {str(route.resource.canonical) for route in web.web_app.router.routes()} | paths
    for path in (
        "/requests",
        "/requests/{request_id}",
        "/requests/{request_id}/history",
        "/health",
        "/metrics",
        "/openapi.json",
    ):
        assert path in routes, path
