"""Answer a lookup on the worker that owns the id, whichever worker was asked.

Faust's `table_route` hashes the key with the producer's metadata of the changelog topic,
which a worker that has not yet written to that topic lacks (faust-streaming/faust#514).
Here the partition comes from the id alone and the owner from the group's assignment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from faust.web import Request, Response, View
from yarl import URL

from leadedge.engine.app import app, settings
from leadedge.rules.partitioning import partition_of
from leadedge.web.common import Handler, not_ready_because, unavailable

FORWARDED = "X-Leadedge-Forwarded"

log = logging.getLogger(__name__)


def owner_url(table_name: str, partition: int) -> URL | None:
    """The web URL of the worker whose active partitions include `partition`."""
    for url, topics in app.router.table_metadata(table_name).items():
        for partitions in topics.values():
            if partition in partitions:
                return URL(url)
    return None


def _same_worker(url: URL) -> bool:
    own = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (own.host, own.port)


# What the owner needs to answer a lookup: the caller's key and what it accepts. Nothing
# else of the client's request is copied (hop-by-hop and length headers least of all).
FORWARDED_HEADERS = ("Authorization", "Accept")


@dataclass(frozen=True, slots=True)
class OwnerAnswer:
    """What the owner of an id answered to a forwarded lookup."""

    status: int
    body: bytes
    content_type: str
    retry_after: str | None


def forwarded_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The headers a forwarded lookup carries: the caller's key, Accept, and the marker."""
    headers = {name: incoming[name] for name in FORWARDED_HEADERS if name in incoming}
    headers[FORWARDED] = "1"
    return headers


async def ask_owner(
    session: aiohttp.ClientSession, target: URL, headers: dict[str, str], timeout_s: float
) -> OwnerAnswer | None:
    """GET `target` from the owner; None when it does not answer within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s), session.get(target, headers=headers) as answer:
            return OwnerAnswer(
                answer.status,
                await answer.read(),
                answer.content_type,
                answer.headers.get("Retry-After"),
            )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log.warning("forwarding to %s failed: %r", target.origin(), exc)
        return None


async def _forward(view: View, request: Request, url: URL) -> Response:
    incoming = cast(Any, request)
    target = incoming.url.with_scheme("http").with_host(url.host).with_port(url.port)
    answer = await ask_owner(
        app.http_client,
        target,
        forwarded_headers(incoming.headers),
        settings.web_forward_timeout_s,
    )
    if answer is None:
        return unavailable(view, "the worker that owns this id is not answering: retry shortly")
    response = view.bytes(answer.body, content_type=answer.content_type, status=answer.status)
    if answer.retry_after is not None:
        response.headers["Retry-After"] = answer.retry_after
    return response


def routed_by_id(table_name: str) -> Callable[[Handler], Handler]:
    """Run the handler on the owner of `request_id`; 503 with Retry-After while unknown."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            request_id = request.match_info["request_id"]
            reasons = not_ready_because()
            if reasons:
                return unavailable(view, "not ready: waiting for " + "; ".join(reasons))
            owner = owner_url(table_name, partition_of(request_id, settings.partitions))
            if owner is None:
                return unavailable(view, "no worker owns this id yet: the group is rebalancing")
            if _same_worker(owner):
                return await handler(view, request, *args, **kwargs)
            if request.headers.get(FORWARDED):
                # The other worker sent it here: the two disagree while partitions move.
                return unavailable(
                    view, "the owner of this id is changing: the group is rebalancing"
                )
            return await _forward(view, request, owner)

        return wrapper

    return decorate
