"""DESIGN's three-event example, end to end on the real stack."""

from __future__ import annotations

import gzip

import orjson
import pytest
from elasticsearch import Elasticsearch

from leadedge.tools.demo import EXAMPLE
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import produce, read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration


def test_design_example_is_merged_indexed_served_and_archived(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    names = Names()
    worker = start_worker(names)
    produce(
        endpoints.broker,
        names.requests_topic,
        [(b"abc123", orjson.dumps(event)) for event in EXAMPLE],
    )

    def merged() -> dict | None:
        status, body = worker.get("/requests/abc123")
        return body if status == 200 and body["event_count"] == 3 else None

    request = wait_for(merged, 60, "the merged request over HTTP")
    assert request["clicks"] == 4
    assert request["impressions"] == 9
    assert request["price"] == 2.45
    assert request["uptick"] == 4.5
    assert request["source"] == 2
    assert request["domain"] == "somewhere.net"
    assert request["geo"]["city_name"] == "London"
    assert request["geo"]["location"] == {"lat": 51.5142, "lon": -0.0931}
    assert request["user_agent"]["name"] == "Chrome"
    assert request["created_at"].endswith("Z") and request["updated_at"] >= request["created_at"]

    es = Elasticsearch(endpoints.es_url)

    def indexed() -> dict | None:
        found = es.options(ignore_status=404).get(index=names.es_alias, id="abc123")
        return (
            found["_source"]
            if found.get("found") and found["_source"]["event_count"] == 3
            else None
        )

    document = wait_for(indexed, 30, "the merged request in Elasticsearch")
    assert document == request
    mapping = es.indices.get_mapping(index=names.es_alias)
    mappings = next(iter(mapping.values()))["mappings"]
    properties = mappings["properties"]
    assert properties["geo"]["properties"]["location"]["type"] == "geo_point"
    assert mappings["runtime"]["ipaddress"]["type"] == "ip"
    assert properties["created_at"]["type"] == "date"

    s3 = endpoints.s3_client()

    def archived() -> list[dict] | None:
        listing = s3.list_objects_v2(Bucket="leadedge", Prefix=names.s3_prefix + "/")
        lines = []
        for item in listing.get("Contents", []):
            assert item["Key"].endswith(".ndjson.gz")
            assert f"/topic={names.requests_topic}/dt=" in item["Key"]
            body = s3.get_object(Bucket="leadedge", Key=item["Key"])["Body"].read()
            lines += [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
        return lines if len(lines) >= 3 else None

    lines = wait_for(archived, 30, "the three raw events in S3")
    assert sorted(line["offset"] for line in lines) == [0, 1, 2]
    assert [line["value"] for line in sorted(lines, key=lambda x: x["offset"])] == EXAMPLE
    assert all(line["key"] == "abc123" and line["topic"] == names.requests_topic for line in lines)

    status, body = worker.get("/requests/never-sent")
    assert status == 404
    assert "never-sent" in body["error"]

    status, history = worker.get("/requests/abc123/history")
    assert status == 200
    assert [e["fields"] for e in history["events"]] == [
        {k: v for k, v in event.items() if k != "id"} for event in EXAMPLE
    ]
    assert [e["offset"] for e in history["events"]] == [0, 1, 2]
    assert (history["total"], history["dropped"], history["truncated"]) == (3, 0, False)

    metrics = worker.get_text("/metrics")
    assert 'leadedge_events_total{outcome="merged"} 3.0' in metrics
    assert worker.get("/health") == (200, {"status": "ok"})


def test_a_long_history_says_how_many_events_it_dropped(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    names = Names()
    worker = start_worker(names, extra={"LEADEDGE_HISTORY_LENGTH": "100"})
    produce(
        endpoints.broker,
        names.requests_topic,
        [(b"long", orjson.dumps({"id": "long", "n": "+1"})) for _ in range(250)],
    )
    wait_for(lambda: worker.get("/requests/long")[1].get("n") == 250, 60, "250 events merged")
    status, history = worker.get("/requests/long/history?limit=1000")
    assert status == 200
    assert history["total"] == 250
    assert history["truncated"] is True
    assert history["dropped"] == 250 - len(history["events"])
    assert len(history["events"]) >= 100
    assert history["events"][-1]["offset"] == 249
    assert worker.get("/requests/long/history?limit=abc")[0] == 400


def test_a_bad_event_reaches_the_dead_letter_topic_with_its_bytes_and_reason(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    names = Names()
    start_worker(names)
    produce(
        endpoints.broker, names.requests_topic, [(b"k1", b"{not json"), (b"k2", b'{"id":"other"}')]
    )
    dead = read_all(endpoints.broker, names.dlq_topic, expect=2, timeout=60)
    assert len(dead) == 2
    by_key = {record.key: record for record in dead}
    assert by_key[b"k1"].value == b"{not json"
    assert dict(by_key[b"k1"].headers)["leadedge.error.reason"] == b"not_json"
    assert dict(by_key[b"k2"].headers)["leadedge.error.reason"] == b"key_mismatch"
    assert dict(by_key[b"k2"].headers)["leadedge.error.topic"] == names.requests_topic.encode()
