"""Secured clusters: Kafka over SASL_SSL (SCRAM, the stack's own CA) and Elasticsearch with
security on (API key or user, HTTPS): end to end, wrong logins, no secret logged."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from leadedge.tools.demo import EXAMPLE
from tests.integration.checks import JSON, archived_lines
from tests.integration.conftest import WorkerFactory
from tests.integration.secure import (
    FAIL_WITHIN_S,
    SecureElasticsearchLogin,
    secure_elasticsearch,
    secure_kafka,
    start_expecting_failure,
)
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_es(endpoints: Endpoints) -> Iterator[SecureElasticsearchLogin]:
    with secure_elasticsearch(endpoints) as login:
        yield login


def test_design_example_over_secured_kafka_and_elasticsearch_is_merged_indexed_archived_and_no_secret_is_logged(  # noqa: E501
    endpoints: Endpoints,
    secure_es: SecureElasticsearchLogin,
    start_worker: WorkerFactory,
    city_db: Path,
    tmp_path: Path,
) -> None:
    names = Names()
    # Only what the README says a worker needs (no cluster `monitor`: its health is a 403).
    api_key = secure_es.new_api_key("worker", [f"{names.es_alias}*", f"{names.stats_alias}*"])
    secure = {**secure_kafka(endpoints), **secure_es.variables(api_key)}
    worker = start_worker(names, extra=secure)
    status, answer, _ = worker.call("POST", "/requests", orjson.dumps(EXAMPLE), JSON)
    assert (status, answer["accepted"]) == (202, 3), answer

    def merged() -> dict[str, object] | None:
        status, body = worker.get("/requests/abc123")
        return body if status == 200 and body["event_count"] == 3 else None

    request = wait_for(merged, 60, "the merged request over HTTP")
    assert (request["clicks"], request["impressions"], request["price"]) == (4, 9, 2.45)
    es = secure_es.client()

    def indexed() -> dict[str, object] | None:
        found = es.options(ignore_status=404).get(index=names.es_alias, id="abc123")
        return found["_source"] if found.get("found") else None

    assert wait_for(indexed, 30, "the merged request in Elasticsearch") == request

    def stats_events() -> int | None:
        # The stats windows, as the report page reads them from the secured cluster.
        status, body = worker.get("/stats?minutes=30")
        assert status == 200, body
        return body["totals"]["events"] or None

    assert wait_for(stats_events, 60, "the stats windows of the three events") == 3

    def archived() -> list[dict[str, object]] | None:
        lines = archived_lines(endpoints, names)
        return lines if len(lines) == 3 else None

    lines = sorted(wait_for(archived, 60, "three archive lines"), key=lambda line: line["offset"])
    # The collector stamps each event with its project.
    assert [line["value"] for line in lines] == [{**e, "project": "default"} for e in EXAMPLE]

    # The tools log in alike: `reindex` with the user and password rebuilds the alias.
    tool_env = worker_env(
        names,
        broker=endpoints.broker,
        es_url=endpoints.es_url,
        s3_endpoint=endpoints.s3_endpoint,
        geoip_db=city_db,
        extra={**secure_kafka(endpoints), **secure_es.variables()},
    )
    reindexed = subprocess.run(
        [str(Path(sys.executable).with_name("leadedge")), "reindex"],
        env=tool_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert reindexed.returncode == 0, reindexed.stdout[-2000:] + reindexed.stderr[-2000:]
    assert "indexed 1 merged requests" in reindexed.stdout, reindexed.stdout
    assert es.get(index=names.es_alias, id="abc123")["_source"] == request

    secrets = [secure["LEADEDGE_KAFKA_SASL_PASSWORD"], api_key, secure_es.password]
    # The encoded API key is base64 of "id:key": neither half may show either.
    secrets += base64.b64decode(api_key).decode().split(":")
    seen = {
        "worker log": worker.log_path.read_text(errors="replace"),
        "metrics": worker.get_text("/metrics"),  # no keys file: /metrics is open
        "reindex output": reindexed.stdout + reindexed.stderr,
    }
    for where, text in seen.items():
        for secret in secrets:
            assert secret not in text, f"a secret in the {where}"


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


def test_a_wrong_elasticsearch_api_key_stops_the_worker_with_the_variable_named(
    endpoints: Endpoints, secure_es: SecureElasticsearchLogin, city_db: Path, tmp_path: Path
) -> None:
    wrong_key = "bm90LWFuLWlkOm5vdC1hLWtleS0xMjM0"  # base64 of "not-an-id:not-a-key-1234"
    seconds, log = start_expecting_failure(
        endpoints, city_db, tmp_path, secure_es.variables(wrong_key)
    )
    assert seconds < FAIL_WITHIN_S, log[-3000:]
    assert "LEADEDGE_ES_API_KEY" in log, log[-3000:]
    assert wrong_key not in log and "not-a-key-1234" not in log


def test_a_wrong_elasticsearch_password_stops_the_worker_with_the_variables_named(
    endpoints: Endpoints, secure_es: SecureElasticsearchLogin, city_db: Path, tmp_path: Path
) -> None:
    wrong = {**secure_es.variables(), "LEADEDGE_ES_PASSWORD": "not-the-password-5678"}
    seconds, log = start_expecting_failure(endpoints, city_db, tmp_path, wrong)
    assert seconds < FAIL_WITHIN_S, log[-3000:]
    assert "LEADEDGE_ES_PASSWORD" in log, log[-3000:]
    assert "not-the-password-5678" not in log and secure_es.password not in log


def test_an_untrusted_elasticsearch_certificate_stops_the_worker_with_the_variable_named(
    endpoints: Endpoints, secure_es: SecureElasticsearchLogin, city_db: Path, tmp_path: Path
) -> None:
    # The system's CAs, which do not know the stack's own.
    untrusted = {k: v for k, v in secure_es.variables().items() if k != "LEADEDGE_ES_CA_FILE"}
    seconds, log = start_expecting_failure(endpoints, city_db, tmp_path, untrusted)
    assert seconds < FAIL_WITHIN_S, log[-3000:]
    assert "LEADEDGE_ES_CA_FILE" in log, log[-3000:]
