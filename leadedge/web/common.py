"""What every endpoint shares: authentication, readiness, errors, HTTP metrics."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from leadedge import metrics
from leadedge.app import api_keys, app
from leadedge.models import DEFAULT_PROJECT

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


def endpoint(route: str, *, authenticate: bool = True) -> Callable[[Handler], Handler]:
    """Time the call by route and status, check the API key, and never leak a traceback.

    The handler gets the caller's project as the keyword argument `project`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            started = time.monotonic()
            try:
                if authenticate and api_keys.enabled:
                    project = api_keys.project_for(request.headers.get("Authorization"))
                    if project is None:
                        response = error(
                            view,
                            401,
                            "missing or unknown API key: send Authorization: Bearer <key>",
                        )
                        response.headers["WWW-Authenticate"] = "Bearer"
                        return response
                else:
                    project = DEFAULT_PROJECT
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
