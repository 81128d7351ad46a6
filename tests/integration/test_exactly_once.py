"""kill -9 the worker at random moments while it merges: nothing lost, nothing twice."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from tests.integration.checks import wait_indexed_as_reference, wait_served_as_reference
from tests.integration.conftest import WorkerFactory
from tests.integration.history import generate, reference_merge, reference_stats
from tests.integration.kafka_io import produce_at_rate, read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration

IDS = 2_000
EVENTS = 100_000
RATE = 3_000  # events/s: the batch engine flushes every 100 ms, so kills land mid-flush
KILLS = 5


def test_merged_requests_and_minute_stats_equal_the_reference_after_kill_9s_mid_stream(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    # Event times 5 ms apart from ten minutes ago: nine one-minute windows per source,
    # recent enough for the stats' retention.
    start_ms = int(time.time() * 1000) - 600_000
    history = generate(IDS, EVENTS, step_ms=5, start_ms=start_ms)
    expected = reference_merge(history, city_db)
    names = Names()
    worker = start_worker(names)

    positions: list[tuple[int, int]] = []
    producer = threading.Thread(
        target=lambda: positions.extend(
            produce_at_rate(endpoints.broker, names.requests_topic, history.records, RATE)
        )
    )
    producer.start()
    rng = random.Random(3)
    for _ in range(KILLS):
        time.sleep(rng.uniform(1.0, 6.0))
        worker.kill()  # SIGKILL to the worker's process group
        worker.start()
    producer.join()
    assert len(positions) == len(history.records)

    def explain(request_id: str) -> str:
        _, timeline = worker.get(f"/requests/{request_id}/history?limit=1000")
        applied = [(e["partition"], e["offset"]) for e in timeline.get("events", [])]
        sent = [
            positions[n] for n, (key, _) in enumerate(history.records) if key == request_id.encode()
        ]
        missing = sorted(set(sent) - set(applied))
        return f"records not in its history: {missing}; in its history: {applied}"

    wait_served_as_reference(worker, expected, 300, explain)
    wait_indexed_as_reference(endpoints, names, expected, 120)

    bad = {positions[index] for index in history.bad_indexes}
    dead = read_all(endpoints.broker, names.dlq_topic, expect=len(bad), timeout=60)
    dead_positions = {
        (
            int(dict(r.headers)["leadedge.error.partition"]),
            int(dict(r.headers)["leadedge.error.offset"]),
        )
        for r in dead
    }
    # Dead letters are at least once: a record replayed after a kill may be sent again.
    assert dead_positions == bad

    check_minute_stats(endpoints, names, reference_stats(history))


def check_minute_stats(
    endpoints: Endpoints, names: Names, expected: dict[str, dict[str, Any]]
) -> None:
    """The stats topic's latest total and the stats index hold exactly the reference sums."""

    def sums(document: dict[str, Any]) -> dict[str, Any]:
        return {name: document[name] for name in ("events", "new_requests", "counters")}

    published: dict[str, dict[str, Any]] = {}

    def topic_matches() -> bool:
        for record in read_all(endpoints.broker, names.stats_topic, expect=10**9, timeout=5):
            published[(record.key or b"").decode()] = sums(orjson.loads(record.value))
        return published == expected

    try:
        wait_for(topic_matches, 120, f"{len(expected)} windows on {names.stats_topic}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: published {published}, expected {expected}") from None

    es = Elasticsearch(endpoints.es_url)
    indexed: dict[str, dict[str, Any]] = {}

    def index_matches() -> bool:
        es.indices.refresh(index=names.stats_alias)
        hits = es.search(index=names.stats_alias, size=1000, version=True)["hits"]["hits"]
        indexed.clear()
        for hit in hits:
            # Versioned by event count: a stale total can never overwrite a newer one.
            assert hit["_version"] == hit["_source"]["events"]
            indexed[hit["_id"]] = sums(hit["_source"])
        return indexed == expected

    try:
        wait_for(index_matches, 120, f"{len(expected)} windows in {names.stats_alias}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: indexed {indexed}, expected {expected}") from None
