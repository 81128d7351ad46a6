"""Writes merged requests to Elasticsearch, versioned so nothing ever goes backwards."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from elasticsearch import AsyncElasticsearch, TransportError
from elasticsearch.exceptions import ApiError, ConnectionError, ConnectionTimeout
from elasticsearch.serializer import OrjsonSerializer

from leadedge import metrics
from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection
from leadedge.exceptions import SinkError
from leadedge.sinks.es_mapping import requests_template
from leadedge.sinks.retry import retry_forever

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, ConnectionTimeout, TransportError, OSError)):
        return True
    return isinstance(exc, ApiError) and exc.status_code in TRANSIENT_STATUS


class _RetryItems(Exception):
    """Some bulk items failed transiently; the whole call is retried for them."""


# (id, version, document): the document as a dict, or already encoded as JSON bytes.
Document = tuple[str, int, dict[str, Any] | bytes]


@dataclass
class WriteResult:
    """What became of a batch besides the documents stored."""

    version_conflicts: int = 0
    rejected: list[tuple[str, Any]] = field(default_factory=list)


class ElasticsearchSink:
    """Bulk-indexes (id, version, document) triples under an alias.

    Each write carries the request's event count as an external version, so a replayed
    or delayed older write is refused by Elasticsearch instead of overwriting a newer one.
    """

    # The part `/health` names while writes are retried.
    component = "elasticsearch"

    def __init__(
        self,
        *,
        url: str | ElasticsearchConnection,
        alias: str,
        ipaddress_field: str = "ipaddress",
        useragent_field: str = "useragent",
        refresh_interval: str = "1s",
        shards: int = 1,
        replicas: int | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.alias = alias
        self.ipaddress_field = ipaddress_field
        self.useragent_field = useragent_field
        self.refresh_interval = refresh_interval
        self.shards = shards
        self.replicas = replicas
        self.request_timeout = request_timeout
        self._client: AsyncElasticsearch | None = None

    @property
    def client(self) -> AsyncElasticsearch:
        """The client; only after `start()`."""
        if self._client is None:
            msg = "ElasticsearchSink used before start()"
            raise SinkError(msg)
        return self._client

    async def start(self) -> None:
        """Create the client, the template and the alias (idempotent), waiting for ES."""
        if self._client is not None:
            return
        self._client = as_es_connection(self.url).client(
            serializers={"application/json": OrjsonSerializer()},
            request_timeout=self.request_timeout,
        )
        await retry_forever(
            self._ensure_alias,
            is_transient=_is_transient,
            what=f"set up alias {self.alias}",
            log=log,
            component=self.component,
        )

    async def _ensure_alias(self) -> None:
        template = requests_template(
            self.alias,
            ipaddress_field=self.ipaddress_field,
            useragent_field=self.useragent_field,
            refresh_interval=self.refresh_interval,
            shards=self.shards,
            replicas=self.replicas or 0,
        )
        await self.client.indices.put_index_template(name=self.alias, **template)
        if await self.client.indices.exists_alias(name=self.alias):
            await self._apply_dynamic_settings()
            return
        try:
            await self.client.indices.create(
                index=f"{self.alias}-000001", aliases={self.alias: {"is_write_index": True}}
            )
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise

    async def _apply_dynamic_settings(self) -> None:
        # The template covers indices created from now on; the settings that can change
        # on a live index also apply to the alias's existing ones, so a changed refresh
        # interval or a replica count that is set takes effect on restart (shards: at the
        # next reindex); an unset one leaves what an operator chose alone.
        index: dict[str, Any] = {"refresh_interval": self.refresh_interval}
        if self.replicas is not None:
            index["number_of_replicas"] = self.replicas
        await self.client.indices.put_settings(index=self.alias, settings={"index": index})

    async def write(self, batch: Sequence[Document]) -> WriteResult:
        """Index every (id, version, document); returns once each is stored or refused.

        Blocks, retrying with capped backoff, while Elasticsearch is down or pushes back
        (429, 5xx): the caller acknowledges nothing meanwhile.
        """
        result = WriteResult()
        if not batch:
            return result
        started = time.monotonic()
        pending = list(batch)

        async def attempt() -> None:
            nonlocal pending
            pending = await self._bulk(pending, result)
            if pending:
                msg = f"{len(pending)} documents to retry"
                raise _RetryItems(msg)

        await retry_forever(
            attempt,
            is_transient=lambda exc: isinstance(exc, _RetryItems) or _is_transient(exc),
            what=f"bulk index into {self.alias}",
            log=log,
            on_retry=metrics.sink_retries_total.labels("elasticsearch").inc,
            component=self.component,
        )
        elapsed = time.monotonic() - started
        metrics.sink_batch_size.labels("elasticsearch").observe(len(batch))
        metrics.sink_write_seconds.labels("elasticsearch").observe(elapsed)
        metrics.es_version_conflicts_total.inc(result.version_conflicts)
        metrics.es_rejected_total.inc(len(result.rejected))
        log.info(
            "indexed %d documents into %s in %.0f ms (%d older versions skipped, %d refused)",
            len(batch),
            self.alias,
            elapsed * 1000,
            result.version_conflicts,
            len(result.rejected),
        )
        return result

    async def _bulk(self, batch: list[Document], result: WriteResult) -> list[Document]:
        # The NDJSON body built here with orjson: the client would encode each line with
        # the standard library's json, and a document already encoded is reused as is.
        lines: list[bytes] = []
        for request_id, version, document in batch:
            action = {"_index": self.alias, "_id": request_id, "version": version}
            lines.append(orjson.dumps({"index": {**action, "version_type": "external_gte"}}))
            lines.append(document if isinstance(document, bytes) else orjson.dumps(document))
        lines.append(b"")
        body = cast(Any, b"\n".join(lines))
        response = await self.client.bulk(operations=body)
        if not response.get("errors"):
            return []
        retry: list[Document] = []
        for item, sent in zip(response["items"], batch, strict=True):
            outcome = item["index"]
            status = outcome.get("status", 500)
            if status < 300:
                continue
            if status == 409:
                result.version_conflicts += 1
            elif status in TRANSIENT_STATUS:
                retry.append(sent)
            else:
                result.rejected.append((sent[0], outcome.get("error")))
        return retry

    async def stop(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None
