"""The worker's web server: Faust's aiohttp driver with a guard in front of every route.

- Only leadedge's declared routes are served (`leadedge.gate.access`); Faust's own pages
  (`/table`, `/router`, statistics, graph, index) are not mounted at all.
- The API key is checked before any handler runs or any body is read.
- Slow or greedy clients cannot hold the server: a client has `read_timeout_s` to send
  its request headers and then its body; at most `max_connections` are open at once;
  a kept-alive connection serves `max_requests_per_connection` requests, then closes.

aiohttp already closes a connection whose request headers are not complete when its
keep-alive timer fires (it runs from the connection's start, and again after each
answer), so that timer, set to the read timeout, is the header timeout. Faust 0.15.3's
driver builds its runner in `__init__` and mounts blueprints from class attributes; both
are overridden here and covered by a contract test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from faust.types import AppT
from faust.web.drivers.aiohttp import Web

from leadedge import metrics
from leadedge.config import Settings
from leadedge.gate.access import CALLER, Access, access_of
from leadedge.gate.auth import ApiKeys, Caller
from leadedge.rules.models import DEFAULT_PROJECT

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class WebLimits:
    """What one client may hold of the web server."""

    read_timeout_s: float = 10.0
    max_connections: int = 256
    max_requests_per_connection: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> WebLimits:
        """The LEADEDGE_WEB_* limits."""
        return cls(
            settings.web_read_timeout_s,
            settings.web_max_connections,
            settings.web_max_requests_per_connection,
        )


def _json(status: int, message: str, **headers: str) -> web.Response:
    response = web.json_response({"error": message}, status=status, dumps=_dumps)
    response.headers.update(headers)
    return response


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _refuse(route: str, method: str, reason: str, response: web.Response) -> web.Response:
    metrics.http_refused_total.labels(reason).inc()
    metrics.http_request_seconds.labels(method, route, str(response.status)).observe(0.0)
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(keys: ApiKeys, limits: WebLimits) -> Any:
    """The middleware that runs before every handler, the framework's included."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        route, access = access_of(request)
        caller = Caller(DEFAULT_PROJECT)
        if keys.enabled and access is not Access.PUBLIC:
            found = keys.caller(request.headers.get("Authorization"))
            if found is None:
                answer = _json(401, "missing or unknown API key: send Authorization: Bearer <key>")
                # Basic too, so that a browser asks its reader for the key (the password).
                answer.headers.add("WWW-Authenticate", "Bearer")
                answer.headers.add("WWW-Authenticate", 'Basic realm="leadedge", charset="UTF-8"')
                return _refuse(route, request.method, "unauthorized", answer)
            caller = found
            if (access is Access.OPERATOR) != caller.operator and access is not None:
                needed = "an operator key" if access is Access.OPERATOR else "a project key"
                answer = _json(403, f"this route needs {needed}")
                return _refuse(route, request.method, "forbidden", answer)
        if access is None:
            # Not a leadedge endpoint: aiohttp's own 404/405, or a framework page that
            # must never answer.
            exception = getattr(request.match_info, "http_exception", None)
            status = exception.status if exception is not None else 404
            return _json(status, f"no route {request.method} {request.path}")
        request[CALLER] = caller
        if request.method in BODY_METHODS and request.body_exists:
            try:
                async with asyncio.timeout(limits.read_timeout_s):
                    # Cached on the request: the handler's own read() returns it.
                    await request.read()
            except TimeoutError:
                answer = _json(408, f"the body did not arrive within {limits.read_timeout_s} s")
                answer.force_close()
                if isinstance(request.protocol, CountingRequestHandler):
                    # Closed right after the answer, not drained of the body that is not
                    # coming (aiohttp's lingering read of an unread body).
                    request.protocol._lingering_time = 0.0
                return _refuse(route, request.method, "body_timeout", answer)
            except web.HTTPRequestEntityTooLarge as exc:
                answer = _json(413, f"body too large: {exc.text}")
                answer.force_close()
                return _refuse(route, request.method, "body_too_large", answer)
        response = await handler(request)
        protocol = request.protocol
        if isinstance(protocol, CountingRequestHandler):
            protocol.served += 1
            if protocol.served >= limits.max_requests_per_connection:
                response.force_close()
        return response

    return guarded


class CountingRequestHandler(RequestHandler):
    """aiohttp's connection handler, counting the requests it served."""

    served = 0


class _Refused(asyncio.Protocol):
    """A connection over the cap: a 503 and closed, before a byte is read."""

    BODY = b'{"error":"too many open connections: retry shortly"}'
    ANSWER = (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        metrics.http_refused_total.labels("too_many_connections").inc()
        # uvloop's transports do not subclass asyncio's, but have the same methods.
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(self.ANSWER)
        writer.close()


class LimitedServer(Server):
    """aiohttp's server, refusing connections over `max_connections`."""

    def __init__(self, base: Server, max_connections: int) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.max_connections = max_connections

    def __call__(self) -> Any:
        """The protocol for a new connection: served, or refused over the cap."""
        if len(self._connections) >= self.max_connections:
            return _Refused()
        return CountingRequestHandler(self, loop=self._loop, **self._kwargs)


class LimitedRunner(web.AppRunner):
    """The runner Faust's driver would build, serving through a `LimitedServer`."""

    def __init__(self, app: web.Application, limits: WebLimits) -> None:
        # The keep-alive timer is aiohttp's header timeout (see the module's docstring).
        # A body left unread (a refused call) is drained for at most the same time.
        super().__init__(
            app,
            access_log=None,
            keepalive_timeout=limits.read_timeout_s,
            lingering_time=limits.read_timeout_s,
        )
        self.limits = limits

    async def _make_server(self) -> Server:
        base = await super()._make_server()
        return LimitedServer(base, self.limits.max_connections)


class GuardedWeb(Web):
    """Faust's aiohttp web driver with none of Faust's own pages and the guard in front."""

    default_blueprints = ()
    production_blueprints = ()
    debug_blueprints = ()
    optional_blueprints = ()

    def __init__(self, app: AppT, *, keys: ApiKeys, limits: WebLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits
        self.web_app.middlewares.append(guard(keys, limits))
        self._runner = LimitedRunner(self.web_app, limits)
