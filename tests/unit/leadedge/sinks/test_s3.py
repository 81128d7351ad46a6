"""The archive's S3 writer against a fake client: stored, retried, or refused at once."""

from __future__ import annotations

import io
from typing import Any

import botocore.exceptions
import pytest

from leadedge import health
from leadedge.sinks import Sink
from leadedge.sinks.retry import Backoff
from leadedge.sinks.s3 import S3Sink
from tests.unit.leadedge.sinks.test_retry import RecordingClock


def client_error(status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": str(status)}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


class FakeS3:
    """Fails the first puts with the given errors, then keeps the objects."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.objects: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self.closed = False

    def upload_fileobj(
        self, body: io.BytesIO, bucket: str, key: str, ExtraArgs: dict[str, Any], Config: Any
    ) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.objects[f"{bucket}/{key}"] = (body.read(), ExtraArgs)

    def close(self) -> None:
        self.closed = True


def sink(client: FakeS3, clock: RecordingClock, **options: Any) -> S3Sink:
    return S3Sink(
        endpoint_url="http://unused:9000",
        bucket="archive",
        region="us-east-1",
        backoff=Backoff(first_delay=1.0, sleep=clock),
        client=client,
        **options,
    )


async def test_each_object_is_stored_whole_with_its_content_type() -> None:
    client = FakeS3()
    s3: Sink[tuple[str, bytes], None] = sink(
        client, RecordingClock(), server_side_encryption="AES256"
    )
    await s3.start()
    await s3.write([("a.ndjson.gz", b"one"), ("b.ndjson.gz", b"two")])
    assert client.objects == {
        "archive/a.ndjson.gz": (
            b"one",
            {"ContentType": "application/gzip", "ServerSideEncryption": "AES256"},
        ),
        "archive/b.ndjson.gz": (
            b"two",
            {"ContentType": "application/gzip", "ServerSideEncryption": "AES256"},
        ),
    }
    await s3.stop()
    assert client.closed


async def test_a_5xx_or_no_connection_is_retried_and_s3_degraded_meanwhile() -> None:
    clock = RecordingClock()
    client = FakeS3(
        client_error(503), botocore.exceptions.EndpointConnectionError(endpoint_url="x")
    )
    await sink(client, clock).write([("a", b"one")])
    assert clock.delays == [1.0, 2.0]
    assert "archive/a" in client.objects
    assert "s3" not in health.degraded()


async def test_a_403_is_raised_at_once_for_the_archive_to_report() -> None:
    clock = RecordingClock()
    with pytest.raises(botocore.exceptions.ClientError):
        await sink(FakeS3(client_error(403)), clock).write([("a", b"one")])
    assert clock.delays == []
