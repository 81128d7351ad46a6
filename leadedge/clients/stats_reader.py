"""Reads the per-minute windows back from the stats alias, for the report page."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.serializer import OrjsonSerializer

from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection


class StatsReader:
    """A lazily opened Elasticsearch client for the stats alias."""

    def __init__(self, url: str | ElasticsearchConnection, alias: str) -> None:
        self.url = url
        self.alias = alias
        self._client: AsyncElasticsearch | None = None

    @property
    def client(self) -> AsyncElasticsearch:
        """The client, opened on first use."""
        if self._client is None:
            self._client = as_es_connection(self.url).client(
                serializers={"application/json": OrjsonSerializer()}, request_timeout=10
            )
        return self._client

    async def windows(self, project: str, since_ms: int) -> list[dict[str, Any]]:
        """The project's windows that start at or after `since_ms`, oldest first.

        At most the newest 10,000 (a search's page): a long range of many sources loses
        its oldest windows, never its newest.
        """
        try:
            answer = await self.client.search(
                index=self.alias,
                size=10_000,
                sort=[{"@timestamp": "desc"}],
                query={
                    "bool": {
                        "filter": [
                            {"term": {"project": project}},
                            {"range": {"@timestamp": {"gte": since_ms, "format": "epoch_millis"}}},
                        ]
                    }
                },
            )
        except NotFoundError:
            return []  # no window indexed yet: the alias does not exist
        return [hit["_source"] for hit in reversed(answer["hits"]["hits"])]

    async def close(self) -> None:
        """Close the client if it was opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None
