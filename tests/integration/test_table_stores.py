"""Local table stores after kill -9: the engine's kept, the others rebuilt; all kept after a
clean stop."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from leadedge.engine.table_stores import CLEAN_STOP_MARKER
from tests.integration.conftest import WorkerFactory
from tests.integration.history import generate, reference_merge
from tests.integration.kafka_io import produce
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, Worker, wait_for

pytestmark = pytest.mark.integration

REBUILDING = "rebuilding"


def serves_all(worker: Worker, expected: dict[str, dict]) -> bool:
    return all(worker.get(f"/requests/{key}") == (200, value) for key, value in expected.items())


def rebuilds(worker: Worker) -> int:
    return worker.log_path.read_text(errors="replace").count(REBUILDING)


def markers(datadir: Path) -> list[Path]:
    return list(datadir.rglob(CLEAN_STOP_MARKER))


def test_a_worker_killed_with_9_keeps_the_engines_stores_and_one_stopped_cleanly_keeps_all(
    endpoints: Endpoints, start_worker: WorkerFactory, city_db: Path
) -> None:
    history = generate(40, 400)
    expected = reference_merge(history, city_db)
    names = Names()
    worker = start_worker(names)
    produce(endpoints.broker, names.requests_topic, history.records)
    wait_for(lambda: serves_all(worker, expected), 120, "every merged request over HTTP")
    assert list(worker.datadir.rglob("*.db")), "the worker keeps its tables in RocksDB"
    # A file of ours in each of the engine's stores: gone if a store is removed and rebuilt.
    engine_stores = list(worker.datadir.rglob("merged_requests-*.db"))
    assert engine_stores
    for store in engine_stores:
        (store / "kept-by-test").touch()

    worker.kill(signal.SIGKILL)
    assert markers(worker.datadir) == []
    worker.start()
    assert rebuilds(worker) == 1, worker.log_tail()
    assert all((store / "kept-by-test").exists() for store in engine_stores)
    wait_for(lambda: serves_all(worker, expected), 120, "the same requests after kill -9")

    worker.kill(signal.SIGTERM)
    assert len(markers(worker.datadir)) == 1, worker.log_tail()
    worker.start()
    assert markers(worker.datadir) == [], "starting consumes the clean-stop marker"
    wait_for(lambda: serves_all(worker, expected), 120, "the same requests after a clean stop")
    assert rebuilds(worker) == 1, "a clean stop keeps the local stores"
