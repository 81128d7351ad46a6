"""`leadedge replay` and `leadedge reindex` against the real stack."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from elasticsearch import Elasticsearch

from leadedge.clients.kafka_admin import TopicSpec, ensure_topics
from leadedge.config import bootstrap_servers
from leadedge.exceptions import ReindexError
from leadedge.rules.archive import archive_line, hour_of, object_key
from leadedge.rules.merge import format_time
from leadedge.rules.models import SourceRecord
from leadedge.sinks.es_mapping import requests_index
from leadedge.tools.demo import CHROME, EXAMPLE, SAFARI
from leadedge.tools.reindex import reindex
from leadedge.tools.replay import ReplaySummary, replay
from tests.integration.checks import archived_lines
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for, worker_env

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
BUCKET = "leadedge"

Record = tuple[bytes | None, bytes, int]


def records_straddling_an_hour() -> list[Record]:
    """Events over three ids (plus a bad and a binary record), timestamps across an hour."""
    now = int(time.time() * 1000)
    base = (now // HOUR_MS - 2) * HOUR_MS + HOUR_MS - 4_000  # 4 s before an hour ends
    events: list[tuple[bytes | None, bytes]] = [
        (b"abc123", orjson.dumps(EXAMPLE[0])),
        (
            b"r-two",
            orjson.dumps(
                {
                    "id": "r-two",
                    "source": 3,
                    "ipaddress": "2.125.160.218",
                    "useragent": SAFARI,
                    "domain": "example.com",
                    "clicks": "+1",
                    "price": 1.25,
                }
            ),
        ),
        (b"bad", b"{not json"),
        (b"abc123", orjson.dumps(EXAMPLE[1])),
        (
            b"r-three",
            orjson.dumps(
                {
                    "id": "r-three",
                    "useragent": CHROME,
                    "campaign": {"name": "spring", "tags": ["a", "b"]},
                    "amount": "+0.1",
                }
            ),
        ),
        (b"\xfe", b"\xff\x00"),
        (b"r-two", orjson.dumps({"id": "r-two", "clicks": "+2", "uptick": 0.5})),
        (b"abc123", orjson.dumps(EXAMPLE[2])),
        (b"r-three", orjson.dumps({"id": "r-three", "amount": "+0.1"})),
    ]
    return [(key, value, base + n * 1_000) for n, (key, value) in enumerate(events)]


def produce_timestamped(broker: str, topic: str, records: list[Record]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker), enable_idempotence=True
        )
        await producer.start()
        try:
            for key, value, timestamp_ms in records:
                await producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def as_replayed(value: bytes, timestamp_ms: int) -> bytes:
    """What a replay produces for an archived value: an event object gains its `ts`."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if isinstance(event, dict) and event.get("ts") is None:
        event = {**event, "ts": timestamp_ms}
    return orjson.dumps(event)


def per_key(records: list[tuple[bytes | None, bytes, int]]) -> dict[bytes | None, list[Any]]:
    found: dict[bytes | None, list[Any]] = defaultdict(list)
    for key, value, timestamp_ms in records:
        found[key].append((value, timestamp_ms))
    return dict(found)


def documents(es: Elasticsearch, alias: str) -> dict[str, tuple[int, dict[str, Any]]]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=100, version=True, query={"match_all": {}})["hits"]
    return {hit["_id"]: (hit["_version"], hit["_source"]) for hit in hits["hits"]}


def replay_archive(
    endpoints: Endpoints,
    names: Names,
    source_topic: str,
    start_ms: int,
    end_ms: int,
    target_topic: str,
) -> ReplaySummary:
    """`leadedge replay` of the test's archive: `source_topic`'s events in [start, end)."""
    return asyncio.run(
        replay(
            s3=endpoints.s3_client(),
            bucket=BUCKET,
            prefix=names.s3_prefix,
            source_topic=source_topic,
            start_ms=start_ms,
            end_ms=end_ms,
            broker=endpoints.broker,
            target_topic=target_topic,
        )
    )


def test_replay_reproduces_the_archive_and_reindex_switches_the_alias(
    endpoints: Endpoints, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    names = Names()
    start_worker(names)
    records = records_straddling_an_hour()
    produce_timestamped(endpoints.broker, names.requests_topic, records)

    # Archived (every record, once) and indexed (each id at its final event count).
    wait_for(
        lambda: len(archived_lines(endpoints, names)) == len(records) or None,
        60,
        "every raw record in S3",
    )
    es = Elasticsearch(endpoints.es_url)
    counts = {"abc123": 3, "r-two": 2, "r-three": 2}

    def indexed() -> bool:
        for request_id, count in counts.items():
            found = es.options(ignore_status=404).get(index=names.es_alias, id=request_id)
            if not found.get("found") or found["_source"]["event_count"] != count:
                return False
        return True

    wait_for(indexed, 60, "the three merged requests in Elasticsearch")
    hours = {(line["timestamp"] // HOUR_MS) for line in archived_lines(endpoints, names)}
    assert len(hours) == 2, "the records straddle an hour boundary"

    originals = read_all(endpoints.broker, names.requests_topic, expect=len(records))
    assert len(originals) == len(records)
    assert sorted(record.timestamp for record in originals) == [ts for _, _, ts in records]

    # Replay [first, last) into a new topic: the last record is outside the range.
    target = f"t{names.uid}-replayed"
    asyncio.run(ensure_topics(bootstrap_servers(endpoints.broker), [TopicSpec(target, 4, 1)]))
    start_ms, end_ms = records[0][2], records[-1][2]
    replay_started_ms = int(time.time() * 1000)
    summary = replay_archive(endpoints, names, names.requests_topic, start_ms, end_ms, target)
    assert summary.hours == 2
    assert summary.lines == len(records)
    assert summary.replayed == len(records) - 1
    assert summary.out_of_range == 1
    assert summary.duplicates == 0

    replayed = read_all(endpoints.broker, target, expect=len(records) - 1)
    assert len(replayed) == len(records) - 1
    # Same keys and values, each event object carrying its record timestamp as `ts`;
    # produced with the current time, so no retention deletes them before they are read.
    # Within each key (one source partition), the same order; the same partition count
    # and key hashing put each key on the same partition.
    assert all(r.timestamp >= replay_started_ms for r in replayed)
    expected = [
        (r.key, as_replayed(r.value, r.timestamp), r.timestamp, r.partition, r.offset)
        for r in originals
        if start_ms <= r.timestamp < end_ms
    ]
    got = [(r.key, r.value, 0, r.partition, r.offset) for r in replayed]
    assert per_key([(k, v, 0) for k, v, _, _, _ in sorted(got, key=lambda x: (x[3], x[4]))]) == (
        per_key([(k, v, 0) for k, v, _, _, _ in sorted(expected, key=lambda x: (x[3], x[4]))])
    )
    assert {(k, p) for k, _, _, p, _ in got} == {(k, p) for k, _, _, p, _ in expected}
    assert (b"\xfe", b"\xff\x00") in {(k, v) for k, v, _, _, _ in got}
    assert (b"bad", b"{not json") in {(k, v) for k, v, _, _, _ in got}

    # The CLI reads the same archive from the environment; a dry run produces nothing.
    env = worker_env(
        names,
        broker=endpoints.broker,
        es_url=endpoints.es_url,
        s3_endpoint=endpoints.s3_endpoint,
        geoip_db=tmp_path / "unused.mmdb",
    )
    cli = Path(sys.executable).with_name("leadedge")
    dry = subprocess.run(
        [str(cli), "replay", "--from", str(start_ms), "--to", str(end_ms), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"would re-produce {len(records) - 1} events to {names.requests_topic}" in dry.stdout

    # Reindex: a new index with the same documents and versions, the alias moved onto it.
    before = documents(es, names.es_alias)
    assert {request_id: version for request_id, (version, _) in before.items()} == counts
    old_indices = set(es.indices.get_alias(name=names.es_alias).body)
    assert old_indices == {f"{names.es_alias}-000001"}

    # A topic that lost merged requests (here: an empty one) does not take the alias.
    empty = f"t{names.uid}-empty"
    asyncio.run(ensure_topics(bootstrap_servers(endpoints.broker), [TopicSpec(empty, 2, 1)]))
    with pytest.raises(ReindexError, match="lacks some merged requests"):
        asyncio.run(
            reindex(
                es_url=endpoints.es_url,
                index=requests_index(names.es_alias),
                broker=endpoints.broker,
                merged_topic=empty,
            )
        )
    assert set(es.indices.get_alias(name=names.es_alias).body) == old_indices
    assert set(es.indices.get(index=f"{names.es_alias}-*").body) == old_indices

    result = asyncio.run(
        reindex(
            es_url=endpoints.es_url,
            index=requests_index(names.es_alias),
            broker=endpoints.broker,
            merged_topic=names.merged_topic,
        )
    )
    assert result.new_index.startswith(f"{names.es_alias}-2")
    # The engine publishes each changed request once per flush: between one record per
    # request and one per event, and the newest of each is what gets indexed.
    assert len(counts) <= result.records_read <= sum(counts.values())
    assert result.documents == len(counts)
    assert (result.old_documents, result.new_documents, result.caught_up) == (3, 3, 0)
    assert result.refused == []
    assert result.old_indices == sorted(old_indices)
    assert result.deleted == sorted(old_indices)

    aliased = es.indices.get_alias(name=names.es_alias).body
    assert set(aliased) == {result.new_index}
    assert aliased[result.new_index]["aliases"][names.es_alias].get("is_write_index") is True
    assert not es.indices.exists(index=f"{names.es_alias}-000001")
    assert documents(es, names.es_alias) == before
    mapping = es.indices.get_mapping(index=result.new_index)[result.new_index]["mappings"]
    assert mapping["properties"]["geo"]["properties"]["location"]["type"] == "geo_point"

    # The CLI, keeping the old index this time (a new index name needs a new second).
    time.sleep(1.1)
    out = subprocess.run(
        [str(cli), "reindex", "--keep-old"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"was {result.new_index}" in out.stdout
    aliased = es.indices.get_alias(name=names.es_alias).body
    assert len(aliased) == 1 and result.new_index not in aliased
    assert es.indices.exists(index=result.new_index)
    assert documents(es, names.es_alias) == before


def test_archived_events_from_30_days_ago_replayed_into_the_live_topic_are_all_merged(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    names = Names()
    worker = start_worker(names)
    # An archive object as the worker wrote it 30 days ago, for an older topic. Records
    # produced with such timestamps would be past the topic's 7-day retention.
    old_topic = f"t{names.uid}-old"
    then_ms = int(time.time() * 1000) - 30 * 24 * HOUR_MS
    ids = [f"old-{n}" for n in range(40)]
    events = [{"id": i, "clicks": "+1"} for i in ids] + [{"id": i, "clicks": "+2"} for i in ids]
    lines = [
        archive_line(
            SourceRecord(
                old_topic,
                0,
                offset,
                then_ms + offset,
                str(event["id"]).encode(),
                orjson.dumps(event),
            )
        )
        for offset, event in enumerate(events)
    ]
    key = object_key(names.s3_prefix, old_topic, 0, 0, hour_of(then_ms))
    endpoints.s3_client().put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"".join(lines)))

    replay_started_ms = int(time.time() * 1000)
    summary = replay_archive(
        endpoints, names, old_topic, then_ms, then_ms + len(events), names.requests_topic
    )
    assert summary.replayed == len(events)
    # Produced with the current time: retention (by record timestamp) leaves them alone.
    produced = read_all(endpoints.broker, names.requests_topic, expect=len(events))
    assert len(produced) == len(events)
    assert min(record.timestamp for record in produced) >= replay_started_ms

    def merged(request_id: str) -> dict[str, Any] | None:
        status, body = worker.get(f"/requests/{request_id}")
        return body if status == 200 and body["event_count"] == 2 else None

    wait_for(lambda: all(merged(i) for i in ids), 90, "every replayed request merged")
    first = merged("old-0")
    assert first is not None and first["clicks"] == 3
    # The event time is the archived one, 30 days back.
    assert first["created_at"] == format_time(then_ms)
