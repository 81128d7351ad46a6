"""The one Elasticsearch writer: versioned bulk writes under an alias, nothing goes backwards.

The merge flush (merged requests), the stats agent (per-minute windows) and `leadedge
reindex` (a new index behind the requests alias) all write through `ElasticsearchSink`;
they differ in the index they write (`IndexSpec`, or a concrete index for `write`) and in
the backoff (`Backoff`: until stored for the live paths, bounded for the command line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from elasticsearch import AsyncElasticsearch, TransportError
from elasticsearch.exceptions import ApiError, ConnectionError, ConnectionTimeout
from elasticsearch.serializer import OrjsonSerializer

from leadedge import metrics
from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection
from leadedge.exceptions import SinkError
from leadedge.sinks.es_bulk import (
    TRANSIENT_STATUS,
    Document,
    WriteResult,
    bulk_body,
    bulk_chunks,
    sort_outcomes,
)
from leadedge.sinks.es_mapping import IndexSpec
from leadedge.sinks.retry import UNTIL_STORED, Backoff, retry

log = logging.getLogger(__name__)
# What a bulk answer is read for (`sort_outcomes`): each item's status and error only.
# Elasticsearch leaves out each item's index, id, version, shards and sequence numbers,
# most of the answer's bytes, which the worker would otherwise parse on every flush.
BULK_ANSWER = "errors,items.*.status,items.*.error"

__all__ = ["Document", "ElasticsearchSink", "WriteResult", "is_transient"]


def is_transient(exc: BaseException) -> bool:
    """No connection, a timeout, or a status that may pass later (408, 429, 5xx)."""
    if isinstance(exc, (ConnectionError, ConnectionTimeout, TransportError, OSError)):
        return True
    return isinstance(exc, ApiError) and exc.status_code in TRANSIENT_STATUS


class _RetryItems(Exception):
    """Some bulk items failed transiently; the call is made again for them."""


class ElasticsearchSink:
    """Bulk-indexes (id, version, document) triples under `index.alias`.

    Each write carries the document's version as an external version (`external_gte`), so
    a replayed or delayed older write is refused by Elasticsearch instead of overwriting a
    newer one. `client` is for a caller that already has one (it is then not closed
    here) and for tests (any object with the same methods).
    """

    def __init__(
        self,
        connection: str | ElasticsearchConnection,
        index: IndexSpec,
        *,
        component: str | None = "elasticsearch",
        backoff: Backoff = UNTIL_STORED,
        request_timeout: float = 30.0,
        client: AsyncElasticsearch | None = None,
    ) -> None:
        self.connection = connection
        self.index = index
        # The part `/health` names while writes are retried; None for the command line.
        self.component = component
        self.backoff = backoff
        self.request_timeout = request_timeout
        self._client = client
        self._owns_client = client is None

    @property
    def alias(self) -> str:
        """The alias written to."""
        return self.index.alias

    @property
    def client(self) -> AsyncElasticsearch:
        """The client; only after `start()` (or when given one)."""
        if self._client is None:
            msg = "ElasticsearchSink used before start()"
            raise SinkError(msg)
        return self._client

    async def start(self) -> None:
        """Create the client, the template and the alias (idempotent), waiting for ES."""
        if self._client is None:
            self._client = as_es_connection(self.connection).client(
                serializers={"application/json": OrjsonSerializer()},
                request_timeout=self.request_timeout,
            )
            self._owns_client = True
        await retry(
            self.ensure_alias,
            is_transient=is_transient,
            what=f"set up alias {self.alias}",
            log=log,
            backoff=self.backoff,
            component=self.component,
        )

    async def put_template(self) -> None:
        """Put the alias's index template: indices created from now on follow it."""
        await self.client.indices.put_index_template(name=self.alias, **self.index.template)

    async def ensure_alias(self) -> None:
        """The template, then the alias: created with its first index, or updated."""
        await self.put_template()
        if await self.client.indices.exists_alias(name=self.alias):
            await self.client.indices.put_settings(
                index=self.alias, settings={"index": self.index.live_settings}
            )
            return
        try:
            await self.client.indices.create(
                index=self.index.first_index, aliases={self.alias: {"is_write_index": True}}
            )
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise

    async def write(self, batch: Sequence[Document], *, into: str | None = None) -> WriteResult:
        """Index every document into the alias (or the index `into`).

        Returns once each is stored, found older than what is there, or refused.

        Retries transient failures (no connection, 429, 5xx, of the call or of single
        items) by the backoff: with the live sinks' it blocks until Elasticsearch takes
        them, and the caller acknowledges nothing meanwhile; with a bounded one, items
        still failing at the last attempt are refused, and a failing call is raised.
        The documents go in calls of at most MAX_BULK_BYTES; a call Elasticsearch finds
        too large (413, a lower `http.max_content_length`) is made again in halves, and a
        single document too large for it is refused.
        """
        result = WriteResult()
        if not batch:
            return result
        target = into or self.alias
        started = time.monotonic()
        chunks = bulk_chunks(batch)
        while chunks:
            chunk = chunks.pop(0)
            try:
                await self._write_chunk(chunk, target, result)
            except ApiError as exc:
                if exc.status_code != 413:
                    raise
                if len(chunk) == 1:
                    result.rejected.append((chunk[0][0], f"413 {exc.message}"))
                    continue
                log.warning("Elasticsearch refused %d documents as too large: halved", len(chunk))
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
        elapsed = time.monotonic() - started
        metrics.sink_batch_size.labels("elasticsearch").observe(len(batch))
        metrics.sink_write_seconds.labels("elasticsearch").observe(elapsed)
        metrics.es_version_conflicts_total.inc(result.version_conflicts)
        metrics.es_rejected_total.inc(len(result.rejected))
        log.info(
            "indexed %d documents into %s in %.0f ms (%d older versions skipped, %d refused)",
            len(batch),
            target,
            elapsed * 1000,
            result.version_conflicts,
            len(result.rejected),
        )
        return result

    async def _write_chunk(self, chunk: list[Document], target: str, result: WriteResult) -> None:
        """One bulk call for `chunk`, made again by the backoff for what fails transiently."""
        pending = chunk
        attempts = 0

        async def attempt() -> None:
            nonlocal pending, attempts
            attempts += 1
            last = self.backoff.attempts is not None and attempts >= self.backoff.attempts
            response = await self.client.bulk(
                operations=cast(Any, bulk_body(target, pending)), filter_path=BULK_ANSWER
            )
            # The client's response reads like the JSON object it holds.
            answer = cast(Mapping[str, Any], response)
            pending = sort_outcomes(answer, pending, result, give_up=last)
            if pending:
                msg = f"{len(pending)} documents to retry"
                raise _RetryItems(msg)

        await retry(
            attempt,
            is_transient=lambda exc: isinstance(exc, _RetryItems) or is_transient(exc),
            what=f"bulk index into {target}",
            log=log,
            backoff=self.backoff,
            on_retry=metrics.sink_retries_total.labels("elasticsearch").inc,
            component=self.component,
        )

    async def stop(self) -> None:
        """Close the client, when this writer made it."""
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._client = None
