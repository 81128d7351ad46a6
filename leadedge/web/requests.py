"""`POST /requests` (the collector) and the lookups `GET /requests/{id}[/history]`."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from faust.web import Request, Response, View
from mode import Service

from leadedge import metrics
from leadedge.engine.app import app, settings, wiring
from leadedge.exceptions import NotDelivered
from leadedge.rules.history import SEQUENCE, chunk_key, chunks_to_read, open_entries, page
from leadedge.rules.merge import merge_event, merged_request
from leadedge.rules.models import Event, Rejection, request_key
from leadedge.rules.validate import event_from_object
from leadedge.tables.merged_requests import merged_requests
from leadedge.tables.request_history import request_history
from leadedge.web.common import endpoint, error, int_param, unavailable
from leadedge.web.routing import routed_by_id

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 500
MAX_PAGE = 1000


@app.service
class CollectorProducer(Service):
    """An idempotent, acks=all producer for accepted events, open while the worker runs."""

    async def on_start(self) -> None:
        """Connect."""
        await wiring.collector_producer.start()

    async def on_stop(self) -> None:
        """Flush and disconnect."""
        await wiring.collector_producer.stop()


def validate_batch(body: Any, project: str) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Accepted (id, bytes) in order, and per rejected event its index and reason."""
    events = body if isinstance(body, list) else [body]
    accepted: list[tuple[str, bytes]] = []
    rejected: list[dict[str, Any]] = []
    now_ms = int(time.time() * 1000)
    for index, doc in enumerate(events):
        if isinstance(doc, dict):
            # The collector decides the project: a key belongs to exactly one.
            doc = {**doc, "project": project}
        # The bytes the merge agent will read: their size is its first check, so here too.
        value = orjson.dumps(doc)
        if len(value) > settings.max_event_bytes:
            detail = f"event has {len(value)} bytes, over {settings.max_event_bytes}"
            rejected.append({"index": index, "reason": "too_large", "detail": detail})
            continue
        result = event_from_object(doc, key=None, record_ts_ms=now_ms, check_key=False)
        if isinstance(result, Event):
            # The merge's own verdict on the event as a new request's first: whatever
            # the merge agent refuses whatever came before (an increment too long for
            # any sum, a type conflict inside the event) is refused here too, with its
            # reason. Verdicts that depend on the request's state are the agent's alone.
            merged = merge_event(None, result, wiring.merge_rules)
            if isinstance(merged, Rejection):
                result = merged
        if isinstance(result, Rejection):
            rejected.append({"index": index, "reason": result.reason, "detail": result.detail})
            continue
        accepted.append((result.id, value))
    return accepted, rejected


@app.page("/requests")
class CollectorView(View):
    """`POST /requests`: one event or an array of up to 500."""

    @endpoint("/requests")
    async def post(self, request: Request, *, project: str, **params: Any) -> Response:
        """Validate each event as the merge agent would; produce the valid ones, keyed by id."""
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error(self, 415, f"Content-Type must be application/json, not {content_type!r}")
        length = request.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error(self, 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            raw = await request.read()
        except HTTPRequestEntityTooLarge:
            return error(self, 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return error(self, 400, f"body is not JSON: {exc}")
        if isinstance(body, list) and not body:
            return error(self, 400, "the array holds no event")
        if isinstance(body, list) and len(body) > MAX_EVENTS:
            return error(self, 413, f"{len(body)} events in one call, over {MAX_EVENTS}")
        accepted, rejected = validate_batch(body, project)
        # 202 only once Kafka has every accepted event (acks=all); the producer connects
        # on first use (the web server answers before the worker's services start).
        try:
            await wiring.collector_producer.deliver(
                [(request_id.encode(), value) for request_id, value in accepted],
                settings.collector_timeout_s,
            )
        except NotDelivered as exc:
            metrics.collector_not_delivered_total.inc()
            return unavailable(
                self,
                f"{exc}; retry: some events may be stored already (an event_id makes "
                "a retry count once)",
            )
        return self.json({"accepted": len(accepted), "rejected": rejected}, status=202)


def _requested(request: Request, project: str) -> tuple[str, str, dict[str, Any] | None]:
    """The id asked for, its table key, and its state when the caller's project has one."""
    request_id = request.match_info["request_id"]
    key = request_key(project, request_id)
    state = merged_requests.get(key)
    # Each project's requests are under their own keys; checked again all the same.
    visible = state is not None and state.get("project") == project
    return request_id, key, state if visible else None


def _not_found(view: View, request_id: str) -> Response:
    return error(view, 404, f"no request with id {request_id!r}")


@app.page("/requests/{request_id}")
class RequestView(View):
    """`GET /requests/{id}`: the merged request, 404 when unknown."""

    @endpoint("/requests/{request_id}")
    @routed_by_id("merged_requests")
    async def get(
        self: View, request: Request, *args: Any, project: str, **params: Any
    ) -> Response:
        """Answer from the local table partition that owns the id."""
        request_id, _, state = _requested(request, project)
        if state is None:
            return _not_found(self, request_id)
        return self.json(merged_request(state))


@app.page("/requests/{request_id}/history")
class HistoryView(View):
    """`GET /requests/{id}/history?offset=0&limit=1000`: the applied events, oldest first."""

    @endpoint("/requests/{request_id}/history")
    @routed_by_id("merged_requests")
    async def get(
        self: View, request: Request, *args: Any, project: str, **params: Any
    ) -> Response:
        """The latest events (at least LEADEDGE_HISTORY_LENGTH), saying how many were dropped."""
        offset = int_param(request, "offset", 0, 0, 10**9)
        limit = int_param(request, "limit", MAX_PAGE, 0, MAX_PAGE)
        if isinstance(offset, str) or isinstance(limit, str):
            return error(self, 400, str(offset if isinstance(offset, str) else limit))
        request_id, key, state = _requested(request, project)
        if state is None:
            return _not_found(self, request_id)
        total = state.get(SEQUENCE, 0)
        events: list[dict[str, Any]] = []
        for chunk in chunks_to_read(state, settings.history_length):
            events.extend(request_history.get(chunk_key(key, chunk)) or [])
        events.extend(open_entries(state))
        return self.json({"id": request_id, **page(events, total, offset, limit)})
