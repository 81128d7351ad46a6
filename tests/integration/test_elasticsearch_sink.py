"""The Elasticsearch sink against the real server: versions never go back."""

from __future__ import annotations

import uuid

import pytest
from elasticsearch import Elasticsearch

from leadedge.sinks.elasticsearch import ElasticsearchSink
from leadedge.sinks.es_mapping import requests_index
from tests.integration.stack import Endpoints

pytestmark = pytest.mark.integration


@pytest.fixture()
async def sink(endpoints: Endpoints) -> ElasticsearchSink:
    sink = ElasticsearchSink(endpoints.es_url, requests_index(f"t{uuid.uuid4().hex[:10]}-requests"))
    await sink.start()
    yield sink  # type: ignore[misc]
    await sink.stop()


def doc(version: int) -> dict[str, object]:
    return {"id": "r1", "event_count": version, "clicks": version}


async def test_a_delayed_or_replayed_write_never_overwrites_a_newer_one(
    sink: ElasticsearchSink, endpoints: Endpoints
) -> None:
    await sink.write([("r1", 5, doc(5))])
    older = await sink.write([("r1", 3, doc(3))])
    same = await sink.write([("r1", 5, doc(5))])
    reordered = await sink.write([("r1", 7, doc(7)), ("r1", 6, doc(6))])
    assert older.version_conflicts == 1
    assert same.version_conflicts == 0  # a replay of the same version is harmless
    assert reordered.version_conflicts == 1
    stored = Elasticsearch(endpoints.es_url).get(index=sink.alias, id="r1")
    assert stored["_version"] == 7
    assert stored["_source"]["clicks"] == 7


async def test_a_document_the_mapping_refuses_is_reported_not_retried(
    sink: ElasticsearchSink,
) -> None:
    result = await sink.write(
        [("bad", 1, {"id": "bad", "geo": "not an object"}), ("good", 1, doc(1))]
    )
    assert [request_id for request_id, _ in result.rejected] == ["bad"]
    assert "parsing_exception" in repr(result.rejected[0][1])


async def test_a_malformed_value_does_not_lose_the_document(
    sink: ElasticsearchSink, endpoints: Endpoints
) -> None:
    result = await sink.write([("m", 1, {"id": "m", "ipaddress": "not-an-ip", "event_count": 1})])
    assert result.rejected == []
    stored = Elasticsearch(endpoints.es_url).get(index=sink.alias, id="m")
    assert stored["_source"]["ipaddress"] == "not-an-ip"


async def test_the_alias_and_template_are_created_once_however_often_started(
    sink: ElasticsearchSink, endpoints: Endpoints
) -> None:
    again = ElasticsearchSink(endpoints.es_url, requests_index(sink.alias))
    await again.start()
    await again.stop()
    indices = Elasticsearch(endpoints.es_url).indices.get_alias(name=sink.alias)
    assert list(indices) == [f"{sink.alias}-000001"]


async def test_a_changed_refresh_interval_applies_to_the_existing_index_on_restart(
    sink: ElasticsearchSink, endpoints: Endpoints
) -> None:
    es = Elasticsearch(endpoints.es_url)

    def interval() -> str:
        [index] = es.indices.get_settings(index=sink.alias).body.values()
        return str(index["settings"]["index"]["refresh_interval"])

    assert interval() == "1s"
    restarted = ElasticsearchSink(
        endpoints.es_url, requests_index(sink.alias, refresh_interval="250ms")
    )
    await restarted.start()
    try:
        assert interval() == "250ms"
    finally:
        await restarted.stop()


async def test_shards_are_set_at_creation_and_a_changed_replica_count_applies_on_restart(
    endpoints: Endpoints,
) -> None:
    es = Elasticsearch(endpoints.es_url)
    alias = f"t{uuid.uuid4().hex[:10]}-requests"

    def index_settings() -> tuple[str, str]:
        [index] = es.indices.get_settings(index=alias).body.values()
        found = index["settings"]["index"]
        return str(found["number_of_shards"]), str(found["number_of_replicas"])

    first = ElasticsearchSink(endpoints.es_url, requests_index(alias, shards=3))
    await first.start()
    await first.stop()
    try:
        assert index_settings() == ("3", "0")
        restarted = ElasticsearchSink(endpoints.es_url, requests_index(alias, shards=3, replicas=1))
        await restarted.start()
        await restarted.stop()
        assert index_settings() == ("3", "1")
    finally:
        es.indices.delete(index=f"{alias}-000001")
        es.indices.delete_index_template(name=alias)
