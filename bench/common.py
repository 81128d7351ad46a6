"""Shared pieces of the benchmarks: names, paths, topics, Elasticsearch and S3, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadedge.clients.kafka_admin import TopicSpec, ensure_topics
from leadedge.config import bootstrap_servers
from leadedge.stack.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BROKER = "kafka://127.0.0.1:9092"
ES_URL = "http://127.0.0.1:9200"
S3_ENDPOINT = "http://127.0.0.1:9000"
PARTITIONS = 8  # the product's default (LEADEDGE_PARTITIONS)


def log(message: str) -> None:
    """Progress on stderr, so stdout stays for figures."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll until `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})"
    raise TimeoutError(msg)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def geoip_db() -> Path | None:
    """The City database the workers use: LEADEDGE_GEOIP_DB, else MaxMind's test one beside us."""
    configured = os.environ.get("LEADEDGE_GEOIP_DB")
    if configured:
        return Path(configured)
    beside = REPO.parent / "shared" / "geoip" / "GeoLite2-City-Test.mmdb"
    return beside if beside.exists() else None


@dataclass
class Names:
    """Fresh names for one benchmark run: every topic, group, alias and prefix starts with it."""

    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"bench{self.uid}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def app_id(self, stage: str) -> str:
        return f"{self.prefix}-{stage}"


# -- Kafka ---------------------------------------------------------------------------------


def create_topic(name: str, partitions: int = PARTITIONS, broker: str = BROKER) -> None:
    asyncio.run(ensure_topics(bootstrap_servers(broker), [TopicSpec(name, partitions, 1)]))


async def _end_offsets(broker: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


def end_offsets(topic: str, broker: str = BROKER) -> dict[int, int]:
    """Each partition's end offset."""
    return asyncio.run(_end_offsets(broker, topic))


def delete_topics(prefix: str, broker: str = BROKER) -> list[str]:
    """Delete every topic whose name contains `prefix` (ours: fresh and unique per run)."""

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker))
        await admin.start()
        try:
            # Quix names its changelog topics "changelog__{group}--…": the prefix is inside.
            ours = [t for t in await admin.list_topics() if prefix in t]
            if ours:
                await admin.delete_topics(ours)
            return ours
        finally:
            await admin.close()

    return asyncio.run(run())


# -- Elasticsearch and S3 ------------------------------------------------------------------


def http_json(method: str, url: str, body: Any = None, timeout: float = 30) -> Any:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return orjson.loads(answer.read() or b"null")


def delete_es(prefix: str, es_url: str = ES_URL) -> list[str]:
    """Delete our indices and index templates (by exact name: wildcards may be refused)."""
    deleted: list[str] = []
    with contextlib.suppress(urllib.error.HTTPError):
        for row in http_json("GET", f"{es_url}/_cat/indices/{prefix}*?format=json"):
            http_json("DELETE", f"{es_url}/{row['index']}")
            deleted.append(row["index"])
    with contextlib.suppress(urllib.error.HTTPError):
        templates = http_json("GET", f"{es_url}/_index_template/{prefix}*")
        for template in templates.get("index_templates", []):
            http_json("DELETE", f"{es_url}/_index_template/{template['name']}")
    return deleted


def delete_s3(prefix: str) -> int:
    """Delete the archive objects under our prefix."""
    import boto3

    from leadedge.config import Settings

    settings = Settings()
    client = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name=settings.s3_region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=f"{prefix}/"
    ):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys})
            count += len(keys)
    return count
