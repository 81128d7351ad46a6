"""Forwarded lookups: only what the owner needs, and 503 when it does not answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from faust.web import Request, Response, View
from multidict import CIMultiDict
from yarl import URL

import leadedge.web.routing as routing
from leadedge.engine.app import app, settings
from leadedge.rules.partitioning import partition_of
from leadedge.tables.merged_requests import merged_requests
from leadedge.web.common import recovery
from leadedge.web.requests import RequestView
from leadedge.web.routing import (
    FORWARDED,
    OwnerAnswer,
    ask_owner,
    forwarded_headers,
    owner_url,
    routed_by_id,
)


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


# Which worker owns an id: the group's assignment of the table's changelog partitions.

OTHER = "http://10.0.0.2:6066"
THIRD = "http://10.0.0.3:6066"


def changelog_topic() -> str:
    return str(merged_requests.changelog_topic.get_topic_name())


@pytest.fixture
def assignment(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, list[int]]]:
    """The assignor's changelog distribution, as the group leader hands it out; empty at first."""
    distribution: dict[str, dict[str, list[int]]] = {}
    monkeypatch.setattr(app.assignor, "_changelog_distribution", distribution)
    return distribution


def test_the_owner_is_the_worker_assigned_the_changelog_partition(
    assignment: dict[str, dict[str, list[int]]],
) -> None:
    assignment[OTHER] = {changelog_topic(): [1, 3]}
    # Another table's partitions say nothing about this one's.
    assignment[THIRD] = {"leadedge-request_history-changelog": [0, 2]}
    assert owner_url("merged_requests", 3) == URL(OTHER)
    assert owner_url("merged_requests", 1) == URL(OTHER)
    assert owner_url("merged_requests", 0) is None
    assert owner_url("merged_requests", 2) is None


def test_no_owner_is_known_before_any_assignment(
    assignment: dict[str, dict[str, list[int]]],
) -> None:
    assert all(owner_url("merged_requests", p) is None for p in range(settings.partitions))


# `routed_by_id` around a handler that says it ran, called on a `RequestView`.

Ran = list[tuple[str, dict[str, Any]]]


def routed(ran: Ran) -> Any:
    @routed_by_id("merged_requests")
    async def get(view: View, request: Request, **kwargs: Any) -> Response:
        ran.append((request.match_info["request_id"], kwargs))
        return view.json({"answered": "here"})

    return get


def asking(request_id: str, **headers: str) -> Any:
    request = make_mocked_request(
        "GET", f"/requests/{request_id}?x=1", headers={"Host": "w1:6066", **headers}
    )
    request.match_info["request_id"] = request_id
    return request


def view() -> View:
    return RequestView(app, app.web)


@pytest.fixture
def owner_is(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A ready worker; `owner_is["url"]` is who owns every id; the partitions asked for."""
    state: dict[str, Any] = {"url": None, "asked": []}

    def owner(table_name: str, partition: int) -> URL | None:
        state["asked"].append((table_name, partition))
        return None if state["url"] is None else URL(state["url"])

    monkeypatch.setattr(routing, "not_ready_because", lambda: [])
    monkeypatch.setattr(routing, "owner_url", owner)
    return state


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> list[tuple[View, Any, URL]]:
    calls: list[tuple[View, Any, URL]] = []

    async def forward(view: View, request: Request, url: URL) -> Response:
        calls.append((view, request, url))
        return view.json({"answered": "by the owner"})

    monkeypatch.setattr(routing, "_forward", forward)
    return calls


def error_of(response: Response) -> str:
    message: str = orjson.loads(response.body)["error"]
    return message


async def test_a_worker_that_is_not_ready_answers_503_naming_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, forwards: list[tuple[View, Any, URL]]
) -> None:
    # The real readiness check: no first recovery yet, and a rebalance under way.
    monkeypatch.setattr(recovery(), "completed", asyncio.Event())
    monkeypatch.setattr(app, "rebalancing", True)
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1"))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert error_of(response) == (
        "not ready: waiting for the first partition assignment and table recovery; "
        "the consumer group to finish rebalancing"
    )
    assert ran == [] and forwards == []


async def test_every_reason_the_worker_is_not_ready_is_named(
    monkeypatch: pytest.MonkeyPatch, owner_is: dict[str, Any]
) -> None:
    reasons = ["the consumer group to finish rebalancing", "changelog recovery: 7 records left"]
    monkeypatch.setattr(routing, "not_ready_because", lambda: reasons)
    owner_is["url"] = str(app.conf.canonical_url)
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1"))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert error_of(response) == "not ready: waiting for " + "; ".join(reasons)
    # Readiness is decided first: no owner was looked up, no handler ran.
    assert ran == [] and owner_is["asked"] == []


async def test_an_id_no_worker_owns_yet_gets_503_the_group_is_rebalancing(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1"))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "rebalancing" in error_of(response) and "no worker owns this id" in error_of(response)
    assert ran == [] and forwards == []


async def test_the_owner_of_an_id_is_looked_up_by_the_ids_partition(
    owner_is: dict[str, Any],
) -> None:
    owner_is["url"] = str(app.conf.canonical_url)
    for request_id in ("r1", "r2", "\u00e9t\u00e9", "42"):
        await routed([])(view(), asking(request_id))
    assert owner_is["asked"] == [
        ("merged_requests", partition_of(request_id, settings.partitions))
        for request_id in ("r1", "r2", "\u00e9t\u00e9", "42")
    ]


async def test_the_owner_itself_runs_the_handler_with_its_arguments(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    owner_is["url"] = str(app.conf.canonical_url)
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1"), project="alpha")
    assert response.status == 200 and orjson.loads(response.body) == {"answered": "here"}
    assert ran == [("r1", {"project": "alpha"})] and forwards == []


async def test_the_owner_runs_the_handler_even_for_a_forwarded_request(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    # Host and port decide: the scheme and path of the owner's URL do not.
    own = URL(str(app.conf.canonical_url))
    owner_is["url"] = str(own.with_scheme("https").with_path("/somewhere"))
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1", **{FORWARDED: "1"}))
    assert response.status == 200 and len(ran) == 1 and forwards == []


async def test_the_real_lookup_runs_on_the_owner_and_answers_404_for_an_unknown_id(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    owner_is["url"] = str(app.conf.canonical_url)
    # `RequestView.get` under its endpoint decorator: the routing and the view's handler.
    get = RequestView.get.__wrapped__  # type: ignore[attr-defined]
    response = await get(view(), asking("nobody-has-this"), project="alpha")
    assert response.status == 404 and "nobody-has-this" in error_of(response)
    assert forwards == []


async def test_a_request_forwarded_to_a_worker_that_does_not_own_the_id_gets_503_not_a_loop(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    owner_is["url"] = OTHER
    ran: Ran = []
    response = await routed(ran)(view(), asking("r1", **{FORWARDED: "1"}))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "owner of this id is changing" in error_of(response)
    assert ran == [] and forwards == []


async def test_a_request_for_an_id_another_worker_owns_is_forwarded_there(
    owner_is: dict[str, Any], forwards: list[tuple[View, Any, URL]]
) -> None:
    owner_is["url"] = OTHER
    ran: Ran = []
    asked = view()
    request = asking("r1", Authorization="Bearer le_x")
    response = await routed(ran)(asked, request)
    assert response.status == 200 and orjson.loads(response.body) == {"answered": "by the owner"}
    assert forwards == [(asked, request, URL(OTHER))]
    assert ran == []


# `_forward`: the same path and query on the owner, its answer passed back as it came.


@pytest.fixture
def owner_answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `ask_owner` is asked and what it answers (`answer`: an OwnerAnswer or None)."""
    state: dict[str, Any] = {"answer": None, "asked": []}
    client = object()

    async def ask(
        session: Any, target: URL, headers: dict[str, str], timeout_s: float
    ) -> OwnerAnswer | None:
        state["asked"].append((session, target, headers, timeout_s))
        answer: OwnerAnswer | None = state["answer"]
        return answer

    monkeypatch.setattr(routing, "ask_owner", ask)
    monkeypatch.setattr(app, "_http_client", client)
    state["client"] = client
    return state


async def test_a_forwarded_lookup_asks_the_owner_for_the_same_path_and_query(
    owner_answers: dict[str, Any],
) -> None:
    owner_answers["answer"] = OwnerAnswer(200, b'{"id":"r1"}', "application/json", None)
    request = asking("r1", Authorization="Bearer le_x", Accept="application/json", Cookie="c=1")
    response = await routing._forward(view(), request, URL("https://10.0.0.2:7077/ignored"))
    [(session, target, headers, timeout_s)] = owner_answers["asked"]
    assert session is owner_answers["client"]
    assert target == URL("http://10.0.0.2:7077/requests/r1?x=1")
    assert headers == {
        "Authorization": "Bearer le_x",
        "Accept": "application/json",
        FORWARDED: "1",
    }
    assert timeout_s == settings.web_forward_timeout_s
    assert (response.status, response.body, response.content_type) == (
        200,
        b'{"id":"r1"}',
        "application/json",
    )
    assert "Retry-After" not in response.headers


async def test_the_owners_503_and_its_retry_after_come_back_as_they_were(
    owner_answers: dict[str, Any],
) -> None:
    owner_answers["answer"] = OwnerAnswer(503, b'{"error":"x"}', "application/json", "5")
    response = await routing._forward(view(), asking("r1"), URL(OTHER))
    assert (response.status, response.headers["Retry-After"], response.body) == (
        503,
        "5",
        b'{"error":"x"}',
    )


async def test_an_owner_that_does_not_answer_gives_503_with_retry_after(
    owner_answers: dict[str, Any],
) -> None:
    response = await routing._forward(view(), asking("r1"), URL(OTHER))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "not answering" in error_of(response)
