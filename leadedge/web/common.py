"""What every endpoint shares: authentication, readiness, errors, HTTP metrics."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from leadedge import metrics
from leadedge.engine.app import app
from leadedge.gate.access import Access, caller_of, declare

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
Handler = Callable[..., Awaitable[Response]]


def error(view: View, status: int, message: str, **headers: str) -> Response:
    """A JSON error body that says what is wrong."""
    response = view.json({"error": message}, status=status)
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def unavailable(view: View, why: str) -> Response:
    """503 with Retry-After: never a silent empty or stale answer."""
    return error(view, 503, why, Retry_After=RETRY_AFTER_S)


def int_param(request: Request, name: str, default: int, minimum: int, maximum: int) -> int | str:
    """A query parameter of ASCII digits from `minimum` to `maximum`, or what is wrong."""
    raw = cast(web.Request, request).query.get(name)
    if raw is None:
        return default
    # ASCII only: str.isdigit() also takes "²" and "①", which int() refuses. The length
    # bound keeps int() away from huge inputs.
    if (
        raw.isascii()
        and raw.isdigit()
        and len(raw) <= len(str(maximum))
        and minimum <= int(raw) <= maximum
    ):
        return int(raw)
    return (
        f"query parameter {name!r} must be an integer from {minimum} to {maximum}, not {raw[:40]!r}"
    )


def recovery() -> Recovery:
    """The table recovery service (on the concrete TableManager, not its interface)."""
    return cast(TableManager, app.tables).recovery


def recovery_remaining() -> int:
    """Changelog records this worker still has to read into its tables."""
    state = recovery()
    return sum(
        max(state.active_highwaters.get(tp, 0) - offset, 0)
        for tp, offset in state.active_offsets.items()
    )


def not_ready_because() -> list[str]:
    """What this worker waits for before it can answer from its tables."""
    reasons = []
    if not recovery().completed.is_set():
        # Before the first assignment nothing says "rebalancing" yet, but nothing is served.
        reasons.append("the first partition assignment and table recovery")
    if app.rebalancing:
        reasons.append("the consumer group to finish rebalancing")
    if recovery().in_recovery:
        reasons.append(f"changelog recovery: {recovery_remaining()} records left")
    return reasons


def endpoint(route: str, *, access: Access = Access.PROJECT) -> Callable[[Handler], Handler]:
    """Declare who may call the route, time the call by status, never leak a traceback.

    `route` is the path exactly as the page registers it. The method is the handler's
    name (`get`, `post`). The web server's guard has checked the key before the handler
    runs; the handler gets the caller's project as the keyword argument `project`.
    """

    def decorate(handler: Handler) -> Handler:
        declare(handler.__name__, route, access)

        @functools.wraps(handler)
        async def wrapper(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            started = time.monotonic()
            project = caller_of(cast(web.Request, request)).project or ""
            try:
                response = await handler(view, request, *args, project=project, **kwargs)
            except ServiceUnavailable:
                response = unavailable(
                    view, "the owner of this id is not known yet: the group is rebalancing"
                )
            except Exception:
                log.exception("%s %s failed", request.method, route)
                response = error(view, 500, "internal error; the worker log has the details")
            metrics.http_request_seconds.labels(
                request.method, route, str(response.status)
            ).observe(time.monotonic() - started)
            return response

        return wrapper

    return decorate
