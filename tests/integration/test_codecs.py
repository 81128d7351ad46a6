"""Records compressed by a non-Python producer (Kafka's Java client), with every codec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from leadedge.config import Settings, bootstrap_servers
from leadedge.stack.kafka import KAFKA_VERSION
from tests.integration.checks import archived_lines
from tests.integration.conftest import WorkerFactory
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 50
PRODUCER = Path(__file__).with_name("java") / "CompressedProducer.java"


def kafka_jars() -> Path:
    """The Kafka client jars the local stack downloads (its broker's own)."""
    settings = Settings()
    libs = Path(settings.stack_cache) / f"kafka-{KAFKA_VERSION}" / "libs"
    if not any(libs.glob("kafka-clients-*.jar")):
        pytest.skip(f"no Kafka client jars in {libs}: run `leadedge stack up` once")
    return libs


def produce_with_java(broker: str, topic: str, codec: str, events: list[dict[str, object]]) -> None:
    lines = "".join(f"{event['id']}\t{orjson.dumps(event).decode()}\n" for event in events)
    done = subprocess.run(
        ["java", "-cp", f"{kafka_jars()}/*", str(PRODUCER), broker, topic, codec],
        input=lines,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and f"sent {len(events)}" in done.stdout, done.stderr[-3000:]


def test_records_with_every_compression_codec_are_merged_and_archived(
    start_worker: WorkerFactory, endpoints: Endpoints
) -> None:
    names = Names()
    worker = start_worker(names)
    broker = bootstrap_servers(endpoints.broker)
    expected = set()
    for codec in CODECS:
        events = [{"id": f"{codec}-{n}", "clicks": "+1", "codec": codec} for n in range(PER_CODEC)]
        expected |= {str(event["id"]) for event in events}
        produce_with_java(broker, names.requests_topic, codec, events)

    es = Elasticsearch(endpoints.es_url)

    def indexed() -> set[str] | None:
        es.indices.refresh(index=names.es_alias)
        hits = es.search(index=names.es_alias, size=1000, query={"match_all": {}})["hits"]["hits"]
        found = {hit["_id"] for hit in hits if hit["_source"]["clicks"] == 1}
        return found if found == expected else None

    wait_for(indexed, 120, f"{len(expected)} merged requests indexed")
    for codec in CODECS:
        status, merged = worker.get(f"/requests/{codec}-7")
        assert (status, merged["codec"], merged["event_count"]) == (200, codec, 1)

    def archived() -> set[str] | None:
        keys = {line["key"] for line in archived_lines(endpoints, names)}
        return keys if keys == expected else None

    wait_for(archived, 120, f"{len(expected)} records archived")
    assert worker.get("/health")[0] == 200
