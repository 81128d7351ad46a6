"""Forwarded lookups: only what the owner needs, and 503 when it does not answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from leadedge.web.routing import FORWARDED, ask_owner, forwarded_headers


async def echo_headers(request: web.Request) -> web.Response:
    return web.json_response(dict(request.headers), headers={"Retry-After": "1"}, status=503)


@pytest.fixture
async def owner() -> AsyncIterator[URL]:
    application = web.Application()
    application.router.add_get("/requests/{id}", echo_headers)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield URL(f"http://127.0.0.1:{runner.addresses[0][1]}")
    await runner.cleanup()


def test_a_forwarded_lookup_carries_only_the_key_and_accept() -> None:
    incoming = CIMultiDict(
        {
            "Authorization": "Bearer le_x",
            "Accept": "application/json",
            "Host": "client.example",
            "Content-Length": "12",
            "Transfer-Encoding": "chunked",
            "Connection": "keep-alive",
            "Cookie": "session=1",
        }
    )
    assert forwarded_headers(incoming) == {
        "Authorization": "Bearer le_x",
        "Accept": "application/json",
        FORWARDED: "1",
    }


async def test_the_owners_answer_comes_back_whole(owner: URL) -> None:
    async with aiohttp.ClientSession() as session:
        answer = await ask_owner(
            session, owner / "requests" / "a", forwarded_headers({"Accept": "*/*"}), 2.0
        )
    assert answer is not None
    assert (answer.status, answer.retry_after, answer.content_type) == (
        503,
        "1",
        "application/json",
    )
    assert b'"X-Leadedge-Forwarded": "1"' in answer.body


async def test_an_owner_that_does_not_answer_gives_none_within_the_timeout() -> None:
    # Accepts the connection, never answers: a stopped or overloaded owner.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        answer = await ask_owner(session, URL(f"http://127.0.0.1:{port}/requests/a"), {}, 0.3)
    assert answer is None
    assert time.monotonic() - started < 2
    server.close()
    # Nobody listening at all.
    async with aiohttp.ClientSession() as session:
        assert await ask_owner(session, URL(f"http://127.0.0.1:{port}/x"), {}, 0.3) is None
