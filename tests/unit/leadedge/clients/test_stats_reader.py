"""The report page's stats reader (`leadedge.clients.stats_reader`) against a fake
Elasticsearch client: the query it sends, what it returns, and when its client is opened."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import AuthorizationException, NotFoundError
from elasticsearch.serializer import OrjsonSerializer

from leadedge.clients import stats_reader as stats_reader_module
from leadedge.clients.elasticsearch import ElasticsearchConnection
from leadedge.clients.stats_reader import StatsReader
from tests.unit.leadedge.clients.test_elasticsearch import api_error

ALIAS = "leadedge-stats"


class FakeElasticsearch:
    """Answers each search with the stored windows, or raises the scripted error."""

    def __init__(self, windows: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.windows = windows
        self.error = error
        self.searches: list[dict[str, Any]] = []
        self.closed = False

    async def search(self, **request: Any) -> dict[str, Any]:
        self.searches.append(request)
        if self.error is not None:
            raise self.error
        # As Elasticsearch answers: sorted as asked, at most `size` hits.
        newest_first = request["sort"] == [{"@timestamp": "desc"}]
        ordered = sorted(self.windows, key=lambda w: w["@timestamp"], reverse=newest_first)
        hits = ordered[: request["size"]]
        return {"hits": {"hits": [{"_id": str(n), "_source": w} for n, w in enumerate(hits)]}}

    async def close(self) -> None:
        self.closed = True


class Opened:
    """Stands in for `as_es_connection`: each client it opens, and with what."""

    def __init__(self, client: FakeElasticsearch) -> None:
        self.fake = client
        self.targets: list[Any] = []
        self.options: list[dict[str, Any]] = []

    def __call__(self, target: Any) -> Opened:
        self.targets.append(target)
        return self

    def client(self, **options: Any) -> FakeElasticsearch:
        self.options.append(options)
        return self.fake


def reader_over(
    monkeypatch: pytest.MonkeyPatch, client: FakeElasticsearch, url: Any = "http://es:9200"
) -> tuple[StatsReader, Opened]:
    opened = Opened(client)
    monkeypatch.setattr(stats_reader_module, "as_es_connection", opened)
    return StatsReader(url, ALIAS), opened


WINDOWS = [
    {"project": "shop", "@timestamp": 1_700_000_040_000, "count": 3},
    {"project": "shop", "@timestamp": 1_700_000_100_000, "count": 5},
]


async def test_a_project_s_windows_since_a_moment_are_returned_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = FakeElasticsearch(WINDOWS)
    reader, _ = reader_over(monkeypatch, client)
    assert await reader.windows("shop", 1_700_000_000_000) == WINDOWS
    assert client.searches == [
        {
            "index": ALIAS,
            "size": 10_000,
            "sort": [{"@timestamp": "desc"}],
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"project": "shop"}},
                        {
                            "range": {
                                "@timestamp": {
                                    "gte": 1_700_000_000_000,
                                    "format": "epoch_millis",
                                }
                            }
                        },
                    ]
                }
            },
        }
    ]


async def test_a_range_with_more_windows_than_a_page_keeps_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = [{"project": "shop", "@timestamp": 60_000 * n, "count": n} for n in range(10_005)]
    reader, _ = reader_over(monkeypatch, FakeElasticsearch(many))
    got = await reader.windows("shop", 0)
    assert len(got) == 10_000
    assert got[0]["count"] == 5 and got[-1]["count"] == 10_004  # oldest first, newest kept


async def test_before_any_window_is_indexed_the_missing_alias_reads_as_no_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader, _ = reader_over(monkeypatch, FakeElasticsearch([], api_error(NotFoundError, 404)))
    assert await reader.windows("shop", 0) == []


async def test_other_elasticsearch_errors_reach_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = api_error(AuthorizationException, 403)
    reader, _ = reader_over(monkeypatch, FakeElasticsearch([], refused))
    with pytest.raises(AuthorizationException):
        await reader.windows("shop", 0)


async def test_the_client_is_opened_on_first_use_once_with_a_timeout_and_closed_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = FakeElasticsearch(WINDOWS)
    connection = ElasticsearchConnection("https://es:9200")
    reader, opened = reader_over(monkeypatch, client, connection)
    assert opened.targets == []
    await reader.close()  # nothing opened: nothing to close
    assert not client.closed
    await reader.windows("shop", 0)
    await reader.windows("shop", 0)
    assert opened.targets == [connection]
    [options] = opened.options
    assert options["request_timeout"] == 10
    assert isinstance(options["serializers"]["application/json"], OrjsonSerializer)
    await reader.close()
    assert client.closed
    # Used again after close: a new client is opened.
    await reader.windows("shop", 0)
    assert len(opened.options) == 2


async def test_a_url_opens_a_client_for_that_cluster() -> None:
    reader = StatsReader("http://es.internal:9200", ALIAS)
    hosts = [str(node.base_url) for node in reader.client.transport.node_pool.all()]
    assert hosts == ["http://es.internal:9200"]
    assert reader.client is reader.client
    await reader.close()
