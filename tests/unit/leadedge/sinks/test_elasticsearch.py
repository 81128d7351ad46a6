"""The one Elasticsearch writer against a fake client: what it sends, retries and reports."""

from __future__ import annotations

from typing import Any, cast

import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch.exceptions import ApiError

from leadedge import health
from leadedge.sinks import Sink
from leadedge.sinks.elasticsearch import ElasticsearchSink
from leadedge.sinks.es_bulk import MAX_BULK_BYTES, Document, WriteResult
from leadedge.sinks.es_mapping import requests_index
from leadedge.sinks.es_stats import stats_index
from leadedge.sinks.retry import Backoff
from tests.unit.leadedge.clients.test_elasticsearch import api_error
from tests.unit.leadedge.sinks.test_retry import RecordingClock


class FakeIndices:
    """The index calls the writer makes, recorded; aliases kept in a set."""

    def __init__(self, calls: list[tuple[str, Any]], aliases: set[str]) -> None:
        self.calls = calls
        self.aliases = aliases

    async def put_index_template(self, *, name: str, **body: Any) -> None:
        self.calls.append(("put_index_template", (name, body)))

    async def exists_alias(self, *, name: str) -> bool:
        return name in self.aliases

    async def put_settings(self, *, index: str, settings: dict[str, Any]) -> None:
        self.calls.append(("put_settings", (index, settings)))

    async def create(self, *, index: str, aliases: dict[str, Any]) -> None:
        self.calls.append(("create", (index, aliases)))
        self.aliases.update(aliases)


class FakeElasticsearch:
    """Answers each bulk call with the next scripted outcome: item statuses or an error."""

    def __init__(self, *outcomes: list[int] | Exception, aliases: set[str] | None = None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, Any]] = []
        self.indices = FakeIndices(self.calls, aliases or set())
        self.closed = False

    async def bulk(self, *, operations: bytes, filter_path: str | None = None) -> dict[str, Any]:
        lines = [orjson.loads(line) for line in operations.split(b"\n") if line]
        actions = lines[::2]
        self.calls.append(("bulk", [(a["index"]["_index"], a["index"]["_id"]) for a in actions]))
        outcome = self.outcomes.pop(0) if self.outcomes else [201] * len(actions)
        if isinstance(outcome, Exception):
            raise outcome
        return {
            "errors": any(status >= 300 for status in outcome),
            "items": [{"index": {"status": s, "error": {"status": s}}} for s in outcome],
        }

    async def close(self) -> None:
        self.closed = True

    def bulks(self) -> list[Any]:
        return [call for name, call in self.calls if name == "bulk"]


def writer(
    client: FakeElasticsearch, backoff: Backoff, alias: str = "leadedge-requests"
) -> ElasticsearchSink:
    return ElasticsearchSink(
        "http://unused:9200",
        requests_index(alias, refresh_interval="2s", replicas=1),
        backoff=backoff,
        client=cast(AsyncElasticsearch, client),
    )


DOCS: list[Document] = [("a", 1, b'{"id":"a"}'), ("b", 2, b'{"id":"b"}'), ("c", 1, b"{}")]


async def test_the_first_start_creates_the_template_and_the_alias_with_its_first_index() -> None:
    client = FakeElasticsearch()
    # Typed as the protocol: mypy checks the writer is a `Sink`.
    sink: Sink[Document, WriteResult] = writer(client, Backoff())
    await sink.start()
    assert [name for name, _ in client.calls] == ["put_index_template", "create"]
    name, body = client.calls[0][1]
    assert name == "leadedge-requests" and body["index_patterns"] == ["leadedge-requests-*"]
    assert client.calls[1][1] == (
        "leadedge-requests-000001",
        {"leadedge-requests": {"is_write_index": True}},
    )


async def test_a_restart_applies_the_live_settings_to_the_existing_indices() -> None:
    client = FakeElasticsearch(aliases={"leadedge-requests"})
    await writer(client, Backoff()).start()
    assert client.calls[1] == (
        "put_settings",
        ("leadedge-requests", {"index": {"refresh_interval": "2s", "number_of_replicas": 1}}),
    )


async def test_the_stats_alias_gets_the_stats_template_through_the_same_writer() -> None:
    client = FakeElasticsearch()
    sink = ElasticsearchSink(
        "http://unused:9200",
        stats_index("leadedge-stats"),
        component="stats-index",
        client=cast(AsyncElasticsearch, client),
    )
    await sink.start()
    _, body = client.calls[0][1]
    assert "counters" in body["template"]["mappings"]["properties"]


async def test_only_the_items_that_failed_transiently_are_sent_again_after_the_backoff() -> None:
    clock = RecordingClock()
    client = FakeElasticsearch([201, 429, 409], [503], [200])
    result = await writer(client, Backoff(first_delay=0.25, sleep=clock)).write(DOCS)
    assert client.bulks() == [
        [("leadedge-requests", "a"), ("leadedge-requests", "b"), ("leadedge-requests", "c")],
        [("leadedge-requests", "b")],
        [("leadedge-requests", "b")],
    ]
    assert clock.delays == [0.25, 0.5]
    assert (result.stored, result.version_conflicts, result.rejected) == (2, 1, [])


async def test_while_elasticsearch_is_away_the_part_is_degraded_until_a_write_passes() -> None:
    seen: list[dict[str, str]] = []

    async def clock(delay: float) -> None:
        seen.append(dict(health.degraded()))

    client = FakeElasticsearch(EsConnectionError("refused"), EsConnectionError("refused"))
    result = await writer(client, Backoff(sleep=clock)).write(DOCS)
    assert result.stored == 3 and len(client.bulks()) == 3
    assert "refused" in seen[0]["elasticsearch"]
    assert "elasticsearch" not in health.degraded()


async def test_a_permanent_refusal_is_reported_per_document_not_retried() -> None:
    clock = RecordingClock()
    client = FakeElasticsearch([201, 400, 201])
    result = await writer(client, Backoff(sleep=clock)).write(DOCS)
    assert result.rejected == [("b", {"status": 400})]
    assert clock.delays == [] and len(client.bulks()) == 1


async def test_a_bounded_backoff_refuses_what_still_fails_at_its_last_attempt() -> None:
    clock = RecordingClock()
    client = FakeElasticsearch([201, 429, 201], [429], [429])
    backoff = Backoff(first_delay=0.5, attempts=3, sleep=clock)
    result = await writer(client, backoff).write(DOCS, into="leadedge-requests-20260102030405")
    assert [call[0][0] for call in client.bulks()] == ["leadedge-requests-20260102030405"] * 3
    assert result.stored == 2
    assert result.rejected == [("b", {"status": 429})]
    assert clock.delays == [0.5, 1.0]


async def test_a_flush_of_large_documents_goes_in_several_bulk_calls_in_order() -> None:
    big = b'{"pad":"' + b"x" * (3 * 1024 * 1024) + b'"}'
    docs: list[Document] = [(name, 1, big) for name in "abcde"]
    client = FakeElasticsearch()
    result = await writer(client, Backoff()).write(docs)
    assert [[doc_id for _, doc_id in call] for call in client.bulks()] == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
    ]
    assert result.stored == 5
    assert all(len(chunk) * len(big) <= MAX_BULK_BYTES for chunk in client.bulks())


async def test_a_bulk_elasticsearch_finds_too_large_is_sent_again_in_halves() -> None:
    # An operator's lower http.max_content_length: 413 for the whole call, never retried
    # as it is; one document too large even alone is refused (a dead letter), not a crash.
    too_large = api_error(ApiError, 413)
    client = FakeElasticsearch(too_large, too_large, [201, 201])
    result = await writer(client, Backoff()).write(DOCS)
    assert [[doc_id for _, doc_id in call] for call in client.bulks()] == [
        ["a", "b", "c"],
        ["a"],
        ["b", "c"],
    ]
    assert result.stored == 2
    assert [doc_id for doc_id, _ in result.rejected] == ["a"]
    assert "413" in str(result.rejected[0][1])


async def test_a_client_given_to_the_writer_is_left_open_for_its_owner() -> None:
    client = FakeElasticsearch()
    sink = writer(client, Backoff())
    await sink.stop()
    assert not client.closed
