"""Writes merged requests to Elasticsearch, versioned so nothing ever goes backwards."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from elasticsearch import AsyncElasticsearch, TransportError
from elasticsearch.exceptions import ApiError, ConnectionError, ConnectionTimeout
from elasticsearch.serializer import OrjsonSerializer

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


class ElasticsearchSink:
    """Bulk-indexes (id, version, document) triples under an alias.

    Each write carries the request's event count as an external version, so a replayed
    or delayed older write is refused by Elasticsearch instead of overwriting a newer one.
    """

    def __init__(
        self,
        *,
        url: str,
        alias: str,
        ipaddress_field: str = "ipaddress",
        useragent_field: str = "useragent",
        refresh_interval: str = "1s",
        request_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.alias = alias
        self.ipaddress_field = ipaddress_field
        self.useragent_field = useragent_field
        self.refresh_interval = refresh_interval
        self.request_timeout = request_timeout
        self.version_conflicts = 0
        self.rejected: list[tuple[str, Any]] = []
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
        self._client = AsyncElasticsearch(
            self.url,
            serializers={"application/json": OrjsonSerializer()},
            request_timeout=self.request_timeout,
        )
        await retry_forever(
            self._ensure_alias,
            is_transient=_is_transient,
            what=f"set up alias {self.alias}",
            log=log,
        )

    async def _ensure_alias(self) -> None:
        template = requests_template(
            self.alias,
            ipaddress_field=self.ipaddress_field,
            useragent_field=self.useragent_field,
            refresh_interval=self.refresh_interval,
        )
        await self.client.indices.put_index_template(name=self.alias, **template)
        if await self.client.indices.exists_alias(name=self.alias):
            return
        try:
            await self.client.indices.create(
                index=f"{self.alias}-000001", aliases={self.alias: {"is_write_index": True}}
            )
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise

    async def write(self, batch: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        """Index every (id, version, document); returns once each is stored or refused."""
        if not batch:
            return
        started = time.monotonic()
        pending = list(batch)

        async def attempt() -> None:
            nonlocal pending
            pending = await self._bulk(pending)
            if pending:
                msg = f"{len(pending)} documents to retry"
                raise _RetryItems(msg)

        await retry_forever(
            attempt,
            is_transient=lambda exc: isinstance(exc, _RetryItems) or _is_transient(exc),
            what=f"bulk index into {self.alias}",
            log=log,
        )
        log.info(
            "indexed %d documents into %s in %.0f ms",
            len(batch),
            self.alias,
            (time.monotonic() - started) * 1000,
        )

    async def _bulk(
        self, batch: list[tuple[str, int, dict[str, Any]]]
    ) -> list[tuple[str, int, dict[str, Any]]]:
        operations: list[dict[str, Any]] = []
        for request_id, version, document in batch:
            operations.append(
                {
                    "index": {
                        "_index": self.alias,
                        "_id": request_id,
                        "version": version,
                        "version_type": "external_gte",
                    }
                }
            )
            operations.append(document)
        response = await self.client.bulk(operations=operations)
        if not response.get("errors"):
            return []
        retry: list[tuple[str, int, dict[str, Any]]] = []
        for item, sent in zip(response["items"], batch, strict=True):
            result = item["index"]
            status = result.get("status", 500)
            if status < 300:
                continue
            if status == 409:
                self.version_conflicts += 1
            elif status in TRANSIENT_STATUS:
                retry.append(sent)
            else:
                log.error("Elasticsearch refused document %s: %s", sent[0], result.get("error"))
                self.rejected.append((sent[0], result.get("error")))
        return retry

    async def stop(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None
