"""Integration fixtures: the real stack, fresh names, real worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.integration.stack import Endpoints, docker_stack, local_stack
from tests.integration.worker import Names, Worker, delete_indices, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    mode = os.environ.get("LEADEDGE_TEST_STACK", "local")
    if mode not in {"local", "docker"}:
        raise pytest.UsageError(f"LEADEDGE_TEST_STACK must be 'local' or 'docker', not {mode!r}")
    with local_stack() if mode == "local" else docker_stack() as found:
        yield found


WorkerFactory = Callable[..., Worker]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failed test shows the end of each of its workers' logs: CI keeps no temp files.
    report = yield
    if report.failed:
        for worker in item.stash.get(WORKERS, []):
            if worker.log_path.exists():
                tail = worker.log_tail(FAILED_TEST_LOG_LINES)
                report.sections.append((f"last lines of {worker.log_path.name}", tail))
    return report


WORKERS = pytest.StashKey[list[Worker]]()
FAILED_TEST_LOG_LINES = 60


@pytest.fixture()
def start_worker(
    endpoints: Endpoints, city_db: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkerFactory]:
    """Start workers for one test; every one of them is killed when the test ends.

    When the test fails, its report shows the end of each worker's log.
    """
    started: list[Worker] = []
    request.node.stash[WORKERS] = started

    def start(names: Names, extra: dict[str, str] | None = None, name: str = "worker") -> Worker:
        env = worker_env(
            names,
            broker=endpoints.broker,
            es_url=endpoints.es_url,
            s3_endpoint=endpoints.s3_endpoint,
            geoip_db=city_db,
            extra=extra,
        )
        worker = Worker(env, tmp_path / f"{name}-data", tmp_path / f"{name}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
    delete_indices(
        endpoints.es_url,
        {
            worker.env[name]
            for worker in started
            for name in ("LEADEDGE_ES_ALIAS", "LEADEDGE_STATS_ALIAS")
            if name in worker.env
        },
    )
