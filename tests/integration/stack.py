"""Where the integration tests get Kafka, Elasticsearch and S3 from.

`LEADEDGE_TEST_STACK=local` (the default) uses `leadedge stack` on this machine, started
if needed and stopped afterwards only if the tests started it; `docker` uses
testcontainers where a Docker engine exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

from leadedge.config import Settings
from leadedge.stack import Stack


@dataclass(frozen=True)
class Endpoints:
    broker: str
    es_url: str
    s3_endpoint: str
    stack: Stack | None = None

    def s3_client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="leadedge",
            aws_secret_access_key="leadedge-secret",
        )


@contextlib.contextmanager
def local_stack() -> Iterator[Endpoints]:
    settings = Settings()
    stack = Stack(Path(settings.stack_dir), Path(settings.stack_cache))
    already_up = all(item.ready for item in stack.status())
    if not already_up:
        stack.up()
    try:
        yield Endpoints(settings.broker, settings.es_url, settings.s3_endpoint, stack)
    finally:
        if not already_up:
            stack.down()


@contextlib.contextmanager
def docker_stack() -> Iterator[Endpoints]:
    from testcontainers.elasticsearch import ElasticSearchContainer
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    elastic = ElasticSearchContainer(
        "docker.elastic.co/elasticsearch/elasticsearch:8.19.7", mem_limit="2G"
    )
    elastic.with_env("xpack.security.enabled", "false")
    minio = MinioContainer(
        "minio/minio:latest", access_key="leadedge", secret_key="leadedge-secret"
    )
    with kafka, elastic, minio:
        s3_endpoint = f"http://{minio.get_container_host_ip()}:{minio.get_exposed_port(9000)}"
        client = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="leadedge",
            aws_secret_access_key="leadedge-secret",
        )
        client.create_bucket(Bucket="leadedge")
        yield Endpoints(f"kafka://{kafka.get_bootstrap_server()}", elastic.get_url(), s3_endpoint)
