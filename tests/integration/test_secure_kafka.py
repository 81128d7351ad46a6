"""Kafka over SASL_SSL (SCRAM, the stack's own CA): end to end, wrong logins, no secret logged."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from leadedge.demo import EXAMPLE
from leadedge.stack.kafka import SECURE_PORT
from tests.integration.checks import JSON, archived_lines
from tests.integration.conftest import WorkerFactory
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for, worker_env

pytestmark = pytest.mark.integration

# How long a worker with a wrong login may take to stop and say why (the bound).
FAIL_WITHIN_S = 30


def secure_kafka(endpoints: Endpoints, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    """The variables of a worker using the stack's SASL_SSL listener."""
    if endpoints.stack is None:
        pytest.skip("the SASL_SSL listener is the local stack's")
    secure = Path(endpoints.stack.state_dir) / "secure"
    login = json.loads((secure / "login.json").read_text())
    return {
        "LEADEDGE_BROKER": f"kafka://127.0.0.1:{SECURE_PORT}",
        "LEADEDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEADEDGE_KAFKA_SASL_MECHANISM": mechanism,
        "LEADEDGE_KAFKA_SASL_USERNAME": login["user"],
        "LEADEDGE_KAFKA_SASL_PASSWORD": login["password"],
        "LEADEDGE_KAFKA_SSL_CAFILE": str(secure / "ca.pem"),
    }


def test_design_example_over_sasl_ssl_is_merged_indexed_archived_and_no_secret_is_logged(
    endpoints: Endpoints, start_worker: WorkerFactory
) -> None:
    secure = secure_kafka(endpoints)
    names = Names()
    worker = start_worker(names, extra=secure)
    status, answer, _ = worker.call("POST", "/requests", orjson.dumps(EXAMPLE), JSON)
    assert (status, answer["accepted"]) == (202, 3), answer

    def merged() -> dict[str, object] | None:
        status, body = worker.get("/requests/abc123")
        return body if status == 200 and body["event_count"] == 3 else None

    request = wait_for(merged, 60, "the merged request over HTTP")
    assert (request["clicks"], request["impressions"], request["price"]) == (4, 9, 2.45)
    es = Elasticsearch(endpoints.es_url)

    def indexed() -> dict[str, object] | None:
        found = es.options(ignore_status=404).get(index=names.es_alias, id="abc123")
        return found["_source"] if found.get("found") else None

    assert wait_for(indexed, 30, "the merged request in Elasticsearch") == request

    def archived() -> list[dict[str, object]] | None:
        lines = archived_lines(endpoints, names)
        return lines if len(lines) == 3 else None

    lines = sorted(wait_for(archived, 60, "three archive lines"), key=lambda line: line["offset"])
    # The collector stamps each event with its project.
    assert [line["value"] for line in lines] == [{**e, "project": "default"} for e in EXAMPLE]
    password = secure["LEADEDGE_KAFKA_SASL_PASSWORD"]
    assert password not in worker.log_path.read_text(errors="replace")
    assert password not in worker.get_text("/metrics")  # no keys file: /metrics is open


def start_expecting_failure(
    endpoints: Endpoints, city_db: Path, tmp_path: Path, extra: dict[str, str]
) -> tuple[float, str]:
    """A worker that must stop by itself: seconds until it exited, and its log."""
    env = worker_env(
        Names(),
        broker=endpoints.broker,
        es_url=endpoints.es_url,
        s3_endpoint=endpoints.s3_endpoint,
        geoip_db=city_db,
        extra=extra,
    )
    faust = Path(sys.executable).with_name("faust")
    log_path = tmp_path / "failing-worker.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(faust), "--datadir", str(tmp_path / "data"), "-A", "leadedge", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=FAIL_WITHIN_S + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the worker still ran after {FAIL_WITHIN_S + 30}s")
    assert process.returncode != 0
    return time.monotonic() - started, log_path.read_text(errors="replace")


def test_a_wrong_kafka_password_stops_the_worker_with_the_variable_named(
    endpoints: Endpoints, city_db: Path, tmp_path: Path
) -> None:
    secure = secure_kafka(endpoints)
    wrong = {**secure, "LEADEDGE_KAFKA_SASL_PASSWORD": "not-the-password-1234"}
    seconds, log = start_expecting_failure(endpoints, city_db, tmp_path, wrong)
    assert seconds < FAIL_WITHIN_S, log[-3000:]
    assert "LEADEDGE_KAFKA_SASL_PASSWORD" in log, log[-3000:]
    assert "not-the-password-1234" not in log
    assert secure["LEADEDGE_KAFKA_SASL_PASSWORD"] not in log


def test_an_untrusted_broker_certificate_stops_the_worker_with_the_variable_named(
    endpoints: Endpoints, city_db: Path, tmp_path: Path
) -> None:
    secure = secure_kafka(endpoints)
    # The system's CAs, which do not know the stack's own.
    untrusted = {k: v for k, v in secure.items() if k != "LEADEDGE_KAFKA_SSL_CAFILE"}
    seconds, log = start_expecting_failure(endpoints, city_db, tmp_path, untrusted)
    assert seconds < FAIL_WITHIN_S, log[-3000:]
    assert "LEADEDGE_KAFKA_SSL_CAFILE" in log, log[-3000:]
