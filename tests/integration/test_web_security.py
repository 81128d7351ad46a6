"""A worker with API keys on: nothing served without the key, nothing across projects,
slow clients cannot hold the server, and fuzzing finds no server error."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch
from faust.web.base import (
    DEBUG_BLUEPRINTS,
    DEFAULT_BLUEPRINTS,
    OPTIONAL_BLUEPRINTS,
    PRODUCTION_BLUEPRINTS,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mode.utils.imports import symbol_by_name

from leadedge.gate.auth import add_key
from tests.integration.conftest import WorkerFactory
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, Worker, wait_for

pytestmark = pytest.mark.integration

MARKER = "alpha-private-marker"
ALPHA_ID = "walk-alpha-1"


def fetch(
    worker: Worker,
    method: str,
    path: str,
    key: str | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{worker.base_url}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def served_routes() -> set[tuple[str, str]]:
    """(method, path pattern) of every route the worker mounts, read from its app."""
    from leadedge.engine.app import app

    app.discover()
    app.web.init_server()
    return {
        (route.method, route.resource.canonical)
        for route in app.web.web_app.router.routes()
        if route.resource is not None
    }


def framework_routes() -> set[tuple[str, str]]:
    """Every page Faust's own blueprints would serve, had they been mounted."""
    blueprints = [
        *DEFAULT_BLUEPRINTS,
        *DEBUG_BLUEPRINTS,
        *OPTIONAL_BLUEPRINTS,
        *PRODUCTION_BLUEPRINTS,
    ]
    return {
        ("GET", prefix + route.uri)
        for prefix, name in blueprints
        for route in symbol_by_name(name).routes
    }


def concrete(pattern: str) -> str:
    return (
        pattern.replace("{request_id}", ALPHA_ID)
        .replace("{name}", "merged_requests")
        .replace("{key}", ALPHA_ID)
    )


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "keys.json"
    return {
        "file": str(path),
        "alpha": add_key(path, "alpha"),
        "beta": add_key(path, "beta"),
        "operator": add_key(path, None),
    }


def test_every_route_answers_only_with_a_key_and_only_its_own_projects_data(
    start_worker: WorkerFactory, keys: dict[str, str]
) -> None:
    worker = start_worker(Names(), extra={"LEADEDGE_API_KEYS_FILE": keys["file"]})
    event = {"id": ALPHA_ID, "domain": MARKER, "clicks": "+1"}
    status, _ = fetch(worker, "POST", "/requests", keys["alpha"], orjson.dumps(event))
    assert status == 202
    wait_for(
        lambda: fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["alpha"])[0] == 200,
        60,
        "alpha's request merged",
    )
    served = served_routes()
    framework = framework_routes()
    assert ("GET", "/table/{name}/{key}/") in framework
    assert not served & framework - {("GET", "/")}, "a framework page is mounted"
    walked = 0
    for method, pattern in sorted(served | framework | {("HEAD", "/table/")}):
        path = concrete(pattern)
        body = orjson.dumps({"id": "walk-probe"}) if method == "POST" else None
        callers = {**keys, "none": None, "wrong": "le_" + "0" * 43}
        answers = {
            caller: fetch(worker, method, path, callers[caller], body)
            for caller in ("none", "wrong", "beta", "operator", "alpha")
        }
        public = pattern == "/health"
        for caller, (status, answer) in answers.items():
            where = f"{method} {path} as {caller}: {status} {answer[:200]!r}"
            assert status < 500 or pattern == "/health", where
            if caller != "alpha":
                assert MARKER.encode() not in answer, where
            if not public and caller in ("none", "wrong"):
                assert status == 401, where
            if (method, pattern) in framework and (method, pattern) not in served:
                assert status in (401, 404), where
        if public:
            assert all(status == 200 for status, _ in answers.values()), (method, path)
        walked += 1
    assert walked >= len(served) + len(framework) - 1

    # A browser opens the report page with the key as its Basic password, once asked.
    request = urllib.request.Request(f"{worker.base_url}/")
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the report page answered without a key")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
        assert 'Basic realm="leadedge"' in ", ".join(exc.headers.get_all("WWW-Authenticate"))
    basic = base64.b64encode(f"reader:{keys['alpha']}".encode()).decode()
    request = urllib.request.Request(
        f"{worker.base_url}/", headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200 and b"<html" in answer.read().lower()

    # The operator reads the metrics and no project's data; a project key, not the metrics.
    assert fetch(worker, "GET", "/metrics", keys["operator"])[0] == 200
    assert fetch(worker, "GET", "/metrics", keys["alpha"])[0] == 403
    assert fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["operator"])[0] == 403
    status, answer = fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["alpha"])
    assert status == 200 and MARKER.encode() in answer
    refused = fetch(worker, "GET", "/metrics", keys["operator"])[1].decode()
    assert 'leadedge_http_refused_total{reason="unauthorized"}' in refused


def test_a_revoked_key_is_refused_and_a_new_one_served_without_a_restart(
    start_worker: WorkerFactory, keys: dict[str, str]
) -> None:
    worker = start_worker(Names(), extra={"LEADEDGE_API_KEYS_FILE": keys["file"]})
    assert fetch(worker, "GET", "/stats", keys["beta"])[0] in (200, 503)
    new_key = add_key(Path(keys["file"]), "gamma")
    subprocess.run(
        [str(Path(sys.executable).with_name("leadedge")), "keys", "revoke", keys["beta"]],
        env={"LEADEDGE_API_KEYS_FILE": keys["file"], "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    wait_for(lambda: fetch(worker, "GET", "/stats", keys["beta"])[0] == 401, 10, "beta refused")
    assert fetch(worker, "GET", "/stats", new_key)[0] in (200, 503)


def test_fifty_slow_clients_are_closed_within_the_read_timeout_while_others_are_served(
    start_worker: WorkerFactory,
) -> None:
    read_timeout_s = 2.0
    worker = start_worker(Names(), extra={"LEADEDGE_WEB_READ_TIMEOUT_S": str(read_timeout_s)})
    host, port = worker.base_url.removeprefix("http://").split(":")
    slow = []
    for n in range(50):
        client = socket.create_connection((host, int(port)), timeout=10)
        # Headers begun, never finished; the 25 others send a body that never ends.
        if n % 2:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            client.sendall(
                b"POST /requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n[{"
            )
        slow.append(client)
    opened = time.monotonic()
    served = 0
    while time.monotonic() - opened < read_timeout_s / 2:
        assert fetch(worker, "GET", "/health")[0] == 200
        served += 1
    assert served > 0
    for client in slow:
        client.settimeout(read_timeout_s * 2 + 5)
        while client.recv(65536):  # the 408 answer to a late body, then the close
            pass
        client.close()
    # Each closed at the read timeout (headers, or body then a 408), with a second's slack.
    assert time.monotonic() - opened < read_timeout_s + 1
    assert fetch(worker, "GET", "/health")[0] == 200


def test_fuzzed_calls_with_keys_on_find_no_server_error_and_no_other_projects_data(
    start_worker: WorkerFactory, keys: dict[str, str], tmp_path: Path
) -> None:
    worker = start_worker(Names(), extra={"LEADEDGE_API_KEYS_FILE": keys["file"]})
    event = {"id": ALPHA_ID, "domain": MARKER, "clicks": "+1"}
    assert fetch(worker, "POST", "/requests", keys["alpha"], orjson.dumps(event))[0] == 202
    wait_for(
        lambda: fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["alpha"])[0] == 200,
        60,
        "alpha's request merged",
    )
    worker.wait_settled()
    for bad in ("²", "①", "٣", "1" * 5000, "-1", "1.0", ""):
        for path in (
            f"/requests/{ALPHA_ID}/history?limit={bad}",
            f"/requests/{ALPHA_ID}/history?offset={bad}",
            f"/stats?minutes={bad}",
        ):
            status, answer = fetch(
                worker, "GET", urllib.parse.quote(path, safe="/?="), keys["alpha"]
            )
            assert status == 400, (path[:80], status, answer[:200])

    schema = tmp_path / "openapi.json"
    schema.write_bytes(fetch(worker, "GET", "/openapi.json", keys["beta"])[1])
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            str(schema),
            "--url",
            worker.base_url,
            "--header",
            f"Authorization: Bearer {keys['beta']}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Whatever beta sent, alpha's request is alpha's alone and unchanged.
    status, answer = fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["alpha"])
    merged = orjson.loads(answer)
    assert (status, merged["domain"], merged["clicks"], merged["event_count"]) == (
        200,
        MARKER,
        1,
        1,
    )
    assert fetch(worker, "GET", f"/requests/{ALPHA_ID}", keys["beta"])[0] == 404

    # Beta reaching for alpha's id (and anything else) by every lookup, with any query.
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        request_id=st.sampled_from([ALPHA_ID, "shared", "x"]) | st.text(min_size=1, max_size=40),
        route=st.sampled_from(["", "/history"]),
        query=st.dictionaries(
            st.sampled_from(["offset", "limit", "minutes", "project"]),
            st.text(max_size=12),
            max_size=3,
        ),
    )
    def lookups_as_beta(request_id: str, route: str, query: dict[str, str]) -> None:
        path = "/requests/" + urllib.parse.quote(request_id, safe="") + route
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, answer = fetch(worker, "GET", path, keys["beta"])
        assert status in (200, 400, 404), (path, status, answer[:200])
        assert MARKER.encode() not in answer, path

    lookups_as_beta()


def test_two_projects_write_the_same_id_and_each_reads_back_only_its_own(
    start_worker: WorkerFactory, keys: dict[str, str], endpoints: Endpoints
) -> None:
    names = Names()
    worker = start_worker(names, extra={"LEADEDGE_API_KEYS_FILE": keys["file"]})
    # The same id, and a custom field one project sends as text and the other as an
    # object: in one shared index, neither may get the other's documents refused.
    sent = {
        "alpha": [{"id": "shared", "clicks": "+1", "meta": "text"}, {"id": "shared", "n": 1}],
        "beta": [{"id": "shared", "clicks": "+5", "meta": {"nested": 2}}],
    }
    for project, events in sent.items():
        assert fetch(worker, "POST", "/requests", keys[project], orjson.dumps(events))[0] == 202

    def merged(project: str) -> dict[str, object] | None:
        status, answer = fetch(worker, "GET", "/requests/shared", keys[project])
        return orjson.loads(answer) if status == 200 else None

    alpha = wait_for(lambda: (m := merged("alpha")) and m["event_count"] == 2 and m, 60, "alpha")
    beta = wait_for(lambda: (m := merged("beta")) and m["event_count"] == 1 and m, 60, "beta")
    assert (alpha["project"], alpha["clicks"], alpha["meta"]) == ("alpha", 1, "text")
    assert (beta["project"], beta["clicks"], beta["meta"]) == ("beta", 5, {"nested": 2})
    status, history = fetch(worker, "GET", "/requests/shared/history", keys["beta"])
    assert status == 200 and orjson.loads(history)["total"] == 1

    es = Elasticsearch(endpoints.es_url)

    def indexed() -> dict[str, dict[str, object]] | None:
        es.indices.refresh(index=names.es_alias)
        hits = es.search(index=names.es_alias, query={"term": {"id": "shared"}})["hits"]["hits"]
        return {hit["_id"]: hit["_source"] for hit in hits} if len(hits) == 2 else None

    documents = wait_for(indexed, 60, "both projects' documents indexed")
    assert documents["alpha\x1fshared"]["meta"] == "text"
    assert documents["beta\x1fshared"]["meta"] == {"nested": 2}
    # Custom fields are searchable all the same (as runtime fields).
    found = es.search(index=names.es_alias, query={"term": {"meta": "text"}})["hits"]["hits"]
    assert [hit["_id"] for hit in found] == ["alpha\x1fshared"]
    assert fetch(worker, "GET", "/metrics", keys["operator"])[0] == 200
    assert "es_rejected_total 0.0" in fetch(worker, "GET", "/metrics", keys["operator"])[1].decode()
