"""One source sends a field as a number, another as an object: every document indexed."""

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
        {"id": "shape-1", "source": "one", "stats": "+1", "meta": "text"},
        {"id": "shape-2", "source": "two", "stats": {"views": "+2"}, "meta": {"deep": 1}},
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

    def windows() -> dict[str, dict[str, Any]] | None:
        found = sources(names.stats_alias, 2)
        if found is None:
            return None
        by_source = {doc["source"]: doc["counters"] for doc in found}
        return (
            by_source if by_source == {"one": {"stats": 4.5}, "two": {"stats.views": 2}} else None
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
