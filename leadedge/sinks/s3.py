"""Stores archive objects in S3 (or any S3 API), retrying until each one is stored."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import time
from collections.abc import Sequence
from typing import Any

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions

from leadedge import metrics
from leadedge.exceptions import SinkError
from leadedge.sinks.retry import UNTIL_STORED, Backoff, retry

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """No connection, a timeout, or a status that may pass later (408, 429, 5xx)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        return int(status) >= 500 or int(status) in (408, 429)
    return isinstance(exc, (botocore.exceptions.BotoCoreError, OSError))


class S3Sink:
    """Puts whole objects; `write` returns only when every object of the batch is stored.

    `client` is for tests: any object with boto3's `upload_fileobj` and `close`.
    """

    # The part `/health` names while puts are retried.
    component = "s3"

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        server_side_encryption: str | None = None,
        multipart_threshold: int = 8 * 1024 * 1024,
        backoff: Backoff = UNTIL_STORED,
        client: Any = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        # None: boto3 looks for credentials in its own chain (variables, profile, role).
        self._credentials = (access_key_id, secret_access_key)
        self.server_side_encryption = server_side_encryption
        self.backoff = backoff
        self._client: Any = client
        self._transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold
        )

    async def start(self) -> None:
        """Create the client; the bucket must exist."""
        if self._client is not None:
            return
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self._credentials[0],
            aws_secret_access_key=self._credentials[1],
            config=botocore.config.Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    async def write(self, batch: Sequence[tuple[str, bytes]]) -> None:
        """Store each (key, body); blocks, retrying, while S3 is unreachable."""
        if self._client is None:
            msg = "S3Sink.write called before start()"
            raise SinkError(msg)
        for key, body in batch:
            started = time.monotonic()
            await retry(
                functools.partial(asyncio.to_thread, self._put, key, body),
                is_transient=is_transient,
                what=f"S3 put s3://{self.bucket}/{key}",
                log=log,
                backoff=self.backoff,
                on_retry=metrics.sink_retries_total.labels("s3").inc,
                component=self.component,
            )
            metrics.sink_batch_size.labels("s3").observe(len(body))
            metrics.sink_write_seconds.labels("s3").observe(time.monotonic() - started)
            log.info(
                "stored s3://%s/%s (%d bytes) in %.0f ms",
                self.bucket,
                key,
                len(body),
                (time.monotonic() - started) * 1000,
            )

    def _put(self, key: str, body: bytes) -> None:
        extra = {"ContentType": "application/gzip"}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
        # upload_fileobj switches to a multipart upload above the threshold.
        self._client.upload_fileobj(
            io.BytesIO(body), self.bucket, key, ExtraArgs=extra, Config=self._transfer
        )

    async def stop(self) -> None:
        """Release the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
