"""Who may call which route: declared by each endpoint, enforced for every request.

The web server's guard (`leadedge.gate.server`) looks every request up here before any
handler runs. A route nobody declared (the framework's own pages, or a path that does
not exist) is never served: 404 once the caller has a valid key.
"""

from __future__ import annotations

from enum import Enum

from aiohttp import web

from leadedge.gate.auth import Caller

# Where the guard leaves the caller for the handler.
CALLER = web.RequestKey("leadedge.caller", Caller)


class Access(Enum):
    """Who a route answers when API keys are on (with keys off, everyone is `default`)."""

    # Anyone: readiness (`/health`) only.
    PUBLIC = "public"
    # A project key; the handler sees only that project's data.
    PROJECT = "project"
    # An operator key: operational endpoints, no project's data.
    OPERATOR = "operator"


ROUTES: dict[tuple[str, str], Access] = {}


def declare(method: str, path: str, access: Access) -> None:
    """Record who may call `method path` (the path as the page registers it)."""
    ROUTES[(method.upper(), path)] = access


def access_of(request: web.BaseRequest) -> tuple[str, Access | None]:
    """The route pattern a request matched (or its path) and who may call it."""
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    path = resource.canonical if resource is not None else request.path
    # HEAD answers what GET answers.
    method = "GET" if request.method == "HEAD" else request.method
    return path, ROUTES.get((method, path))


def caller_of(request: web.BaseRequest) -> Caller:
    """The caller the guard identified; only a declared route's handler asks."""
    caller: Caller = request[CALLER]
    return caller
