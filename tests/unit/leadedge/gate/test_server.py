"""The web server's guard and limits, on a real socket with a small aiohttp app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from leadedge.gate import access
from leadedge.gate.access import Access, caller_of, declare
from leadedge.gate.auth import ApiKeys, add_key
from leadedge.gate.server import LimitedRunner, WebLimits, guard

LIMITS = WebLimits(read_timeout_s=0.5, max_connections=4, max_requests_per_connection=3)


@dataclass
class Served:
    port: int
    project_key: str
    operator_key: str


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(access, "ROUTES", {})
    declare("GET", "/health", Access.PUBLIC)
    declare("GET", "/data", Access.PROJECT)
    declare("POST", "/data", Access.PROJECT)
    declare("GET", "/metrics", Access.OPERATOR)
    yield


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"project": caller_of(request).project}, dumps=compact)


async def echo_length(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())}, dumps=compact)


def compact(value: object) -> str:
    return orjson.dumps(value).decode()


async def start(keys: ApiKeys, limits: WebLimits) -> tuple[LimitedRunner, int]:
    application = web.Application(middlewares=[guard(keys, limits)])
    application.router.add_get("/health", whoami)
    application.router.add_get("/data", whoami)
    application.router.add_post("/data", echo_length)
    application.router.add_get("/metrics", whoami)
    # A route served by the framework but declared by nobody: never answers.
    application.router.add_get("/table/{name}", whoami)
    runner = LimitedRunner(application, limits)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def served(routes: None, tmp_path: Path) -> AsyncIterator[Served]:
    path = tmp_path / "keys.json"
    project_key = add_key(path, "alpha")
    operator_key = add_key(path, None)
    runner, port = await start(ApiKeys(path), LIMITS)
    yield Served(port, project_key, operator_key)
    await runner.cleanup()


async def call(port: int, raw: bytes) -> bytes:
    """One request on a new connection; the whole answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def get(path: str, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_only_public_routes_answer_without_a_key(served: Served) -> None:
    assert status(await call(served.port, get("/health"))) == 200
    for path in ("/data", "/metrics", "/table/merged_requests", "/nothing-here"):
        answer = await call(served.port, get(path))
        assert status(answer) == 401 and b"WWW-Authenticate: Bearer" in answer
        assert status(await call(served.port, get(path, "le_wrong"))) == 401


async def test_each_key_reaches_only_its_kind_of_route(served: Served) -> None:
    answer = await call(served.port, get("/data", served.project_key))
    assert status(answer) == 200 and answer.endswith(b'{"project":"alpha"}')
    assert status(await call(served.port, get("/metrics", served.project_key))) == 403
    assert status(await call(served.port, get("/metrics", served.operator_key))) == 200
    assert status(await call(served.port, get("/data", served.operator_key))) == 403


async def test_undeclared_routes_are_never_served_even_with_a_key(served: Served) -> None:
    for path in ("/table/merged_requests", "/nothing-here"):
        assert status(await call(served.port, get(path, served.project_key))) == 404
    delete = f"DELETE /data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.project_key}\r\n"
    assert status(await call(served.port, (delete + "Connection: close\r\n\r\n").encode())) == 405


async def test_with_keys_off_every_caller_is_the_default_project(routes: None) -> None:
    runner, port = await start(ApiKeys(None), LIMITS)
    try:
        answer = await call(port, get("/data"))
        assert status(answer) == 200 and answer.endswith(b'{"project":"default"}')
        assert status(await call(port, get("/table/x"))) == 404
    finally:
        await runner.cleanup()


async def test_a_client_that_never_finishes_its_headers_is_closed_after_the_read_timeout(
    served: Served,
) -> None:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    # More header bytes now and then do not extend the deadline.
    for _ in range(3):
        await asyncio.sleep(0.1)
        writer.write(b"X-Slow: 1\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert time.monotonic() - started < LIMITS.read_timeout_s + 1.5
    writer.close()


async def test_a_body_that_does_not_arrive_in_time_gets_408(served: Served) -> None:
    head = (
        f"POST /data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.project_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    answer = await call(served.port, head.encode())
    assert status(answer) == 408
    # Answered and closed at the read timeout: not drained for the body that is not coming.
    assert time.monotonic() - started < LIMITS.read_timeout_s + 0.4
    complete = head.replace("Content-Length: 100", "Content-Length: 2") + "}"
    assert b'{"bytes":2}' in await call(served.port, complete.encode())


async def test_a_body_is_not_awaited_for_a_caller_without_a_key(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    assert status(answer) == 401
    assert time.monotonic() - started < LIMITS.read_timeout_s
    # What is left of the body is drained for at most the read timeout, then closed.
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_connections_over_the_cap_get_503_and_the_rest_are_served(served: Served) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(4)]
    await asyncio.sleep(0.05)
    answer = await call(served.port, get("/health"))
    assert status(answer) == 503 and b"Retry-After: 1" in answer
    for _, writer in idle:
        writer.close()
    await asyncio.sleep(0.1)
    assert status(await call(served.port, get("/health"))) == 200


async def test_a_kept_alive_connection_closes_after_its_request_limit(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    answers = []
    for _ in range(LIMITS.max_requests_per_connection):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answers.append(await asyncio.wait_for(reader.readuntil(b'"default"}'), 5))
    assert all(b"Connection: close" not in a for a in answers[:-1])
    assert b"Connection: close" in answers[-1]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


def test_the_worker_mounts_only_declared_routes_behind_the_guard() -> None:
    # Contract with Faust 0.15.3's aiohttp driver: blueprints come from the class
    # attributes GuardedWeb empties, and the runner is the attribute it replaces.
    from leadedge.engine.app import app
    from leadedge.gate.server import GuardedWeb

    app.discover()
    driver = app.web
    assert isinstance(driver, GuardedWeb)
    assert isinstance(driver._runner, LimitedRunner)
    # The aiohttp internals the guard sets (tests above cover what they do).
    assert "_lingering_time" in RequestHandler.__slots__
    driver.init_server()
    mounted = {
        (route.method, route.resource.canonical)
        for route in driver.web_app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert mounted == set(access.ROUTES)
    assert access.ROUTES[("GET", "/health")] is Access.PUBLIC
    assert access.ROUTES[("GET", "/metrics")] is Access.OPERATOR
    assert any(m.__name__ == "guarded" for m in driver.web_app.middlewares)
    # This machine only, unless LEADEDGE_WEB_BIND says otherwise.
    assert app.conf.web_bind == "127.0.0.1"
