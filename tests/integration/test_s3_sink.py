"""The S3 sink against the real S3 API: big objects go multipart, encryption is asked for."""

from __future__ import annotations

import os
import uuid

import pytest

from leadedge.sinks.s3 import S3Sink
from tests.integration.stack import Endpoints

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def sink(endpoints: Endpoints, **extra: object) -> S3Sink:
    return S3Sink(
        endpoint_url=endpoints.s3_endpoint,
        bucket="leadedge",
        region="us-east-1",
        access_key_id="leadedge",
        secret_access_key="leadedge-secret",
        **extra,  # type: ignore[arg-type]
    )


async def test_an_object_over_the_threshold_is_stored_whole_through_a_multipart_upload(
    endpoints: Endpoints,
) -> None:
    s3 = sink(endpoints, multipart_threshold=5 * MIB)
    await s3.start()
    body = os.urandom(12 * MIB)
    key = f"t{uuid.uuid4().hex[:10]}/big.ndjson.gz"
    await s3.write([(key, body)])
    await s3.stop()
    client = endpoints.s3_client()
    stored = client.get_object(Bucket="leadedge", Key=key)
    assert stored["Body"].read() == body
    # An ETag with a part count ("…-3") is how S3 marks a multipart object.
    assert stored["ETag"].strip('"').endswith("-3")


async def test_server_side_encryption_is_requested_when_configured(endpoints: Endpoints) -> None:
    s3 = sink(endpoints, server_side_encryption="AES256")
    await s3.start()
    key = f"t{uuid.uuid4().hex[:10]}/small.ndjson.gz"
    await s3.write([(key, b"x")])
    await s3.stop()
    head = endpoints.s3_client().head_object(Bucket="leadedge", Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/gzip"
