"""The stack's secured servers as a worker's variables, and workers that must refuse to start."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from leadedge.stack.kafka import SECURE_PORT
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, worker_env

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


@dataclass(frozen=True)
class SecureElasticsearchLogin:
    """The stack's Elasticsearch with security on: where it is, whom it trusts, its login."""

    url: str
    ca_file: Path
    user: str
    password: str

    def client(self, **login: Any) -> Elasticsearch:
        """A client with the stack's login, or with the one given."""
        return Elasticsearch(
            self.url,
            ca_certs=str(self.ca_file),
            **(login or {"basic_auth": (self.user, self.password)}),
        )

    def variables(self, api_key: str | None = None) -> dict[str, str]:
        """A worker's variables: with `api_key`, else with the stack's user and password."""
        login = (
            {"LEADEDGE_ES_API_KEY": api_key}
            if api_key is not None
            else {"LEADEDGE_ES_USERNAME": self.user, "LEADEDGE_ES_PASSWORD": self.password}
        )
        return {"LEADEDGE_ES_URL": self.url, "LEADEDGE_ES_CA_FILE": str(self.ca_file), **login}

    def new_api_key(self, name: str, indices: list[str] | None = None) -> str:
        """A new API key (the encoded form clients send) of the stack's user.

        With `indices`, limited to what a worker needs: its index templates and those indices.
        """
        roles: dict[str, Any] = {}
        if indices is not None:
            roles[name] = {
                "cluster": ["manage_index_templates"],
                "indices": [{"names": indices, "privileges": ["all"]}],
            }
        key = self.client().security.create_api_key(name=name, role_descriptors=roles)
        return str(key["encoded"])


@contextlib.contextmanager
def secure_elasticsearch(endpoints: Endpoints) -> Iterator[SecureElasticsearchLogin]:
    """The stack's secured Elasticsearch, started if needed and then stopped again."""
    stack = endpoints.stack
    if stack is None:
        pytest.skip("Elasticsearch with security on is the local stack's")
    component = stack.component("elasticsearch-secure")
    already_up = any(item.name == component.name and item.ready for item in stack.status())
    if not already_up:
        stack.start(component.name)
    secure = Path(stack.state_dir) / "secure"
    login = json.loads((secure / "login.json").read_text())
    try:
        yield SecureElasticsearchLogin(
            f"https://{component.address}", secure / "ca.pem", login["user"], login["password"]
        )
    finally:
        if not already_up:
            stack.stop(component.name)
