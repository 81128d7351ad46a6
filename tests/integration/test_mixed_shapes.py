"""One source sends a field as a number, another as an object: every document indexed.

Both for a name the template does not know (`stats`, `meta`) and for the ones it types
(`clicks`, `domain`, `price`).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from tests.integration.checks import JSON
from tests.integration.conftest import WorkerFactory
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration


def test_a_counter_sent_as_a_number_and_as_an_object_indexes_every_window_and_request(
    start_worker: WorkerFactory, endpoints: Endpoints
) -> None:
    names = Names()
    worker = start_worker(names)
    events = [
        {"id": "shape-1", "source": "one", "stats": "+1", "meta": "text", "clicks": "+2"},
        {
            "id": "shape-2",
            "source": "two",
            "stats": {"views": "+2"},
            "meta": {"deep": 1},
            # The template's own counters and names, in the shapes it does not type them.
            "clicks": {"mobile": "+1"},
            "domain": {"host": "two.example"},
            "price": "free",
        },
        {"id": "shape-1", "stats": "+3"},
        {"id": "shape-3", "source": "one", "stats": "+0.5", "meta": 7},
    ]
    status, answer, _ = worker.call("POST", "/requests", orjson.dumps(events), JSON)
    assert (status, answer["accepted"]) == (202, 4)
    es = Elasticsearch(endpoints.es_url)

    def sources(alias: str, expect: int) -> list[dict[str, Any]] | None:
        if not es.indices.exists_alias(name=alias):
            return None
        es.indices.refresh(index=alias)
        hits = es.search(index=alias, size=100, query={"match_all": {}})["hits"]["hits"]
        return [hit["_source"] for hit in hits] if len(hits) == expect else None

    requests = wait_for(lambda: sources(names.es_alias, 3), 60, "3 merged requests indexed")
    by_id = {doc["id"]: doc for doc in requests}
    assert (by_id["shape-1"]["stats"], by_id["shape-2"]["stats"]) == (4, {"views": 2})
    assert by_id["shape-3"]["stats"] == 0.5
    assert (by_id["shape-1"]["clicks"], by_id["shape-2"]["clicks"]) == (2, {"mobile": 1})
    assert by_id["shape-2"]["domain"] == {"host": "two.example"}
    # Searchable and summed with their types, whatever shape each document holds.
    typed = es.search(
        index=names.es_alias,
        size=0,
        query={"range": {"clicks": {"gte": 2}}},
        aggs={"clicks": {"sum": {"field": "clicks"}}},
    )
    assert (typed["hits"]["total"]["value"], typed["aggregations"]["clicks"]["value"]) == (1, 2.0)
    everything = es.search(
        index=names.es_alias,
        size=0,
        aggs={
            "mobile": {"sum": {"field": "clicks.mobile"}},
            "hosts": {"terms": {"field": "domain.host"}},
        },
    )["aggregations"]
    assert everything["mobile"]["value"] == 1.0
    assert [bucket["key"] for bucket in everything["hosts"]["buckets"]] == ["two.example"]

    def windows() -> dict[str, dict[str, Any]] | None:
        found = sources(names.stats_alias, 2)
        if found is None:
            return None
        by_source = {doc["source"]: doc["counters"] for doc in found}
        return (
            by_source
            if by_source
            == {"one": {"stats": 4.5, "clicks": 2}, "two": {"stats.views": 2, "clicks.mobile": 1}}
            else None
        )

    wait_for(windows, 90, "both sources' stats windows indexed with their counters")
    # And summed by Elasticsearch, whatever the shape.
    sums = es.search(
        index=names.stats_alias,
        size=0,
        aggs={
            "flat": {"sum": {"field": "counters.stats"}},
            "nested": {"sum": {"field": "counters.stats.views"}},
        },
    )["aggregations"]
    assert (sums["flat"]["value"], sums["nested"]["value"]) == (4.5, 2.0)
    metrics = worker.get_text("/metrics")
    assert "leadedge_es_rejected_total 0.0" in metrics
    assert 'leadedge_dead_letters_total{reason="elasticsearch_rejected"}' not in metrics
