"""HTTP: merged requests and their history from whichever worker owns them; health; metrics."""

from __future__ import annotations

from typing import Any, cast

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.web import Request, Response, View

from leadedge import metrics
from leadedge.app import app, settings
from leadedge.history import SEQUENCE, chunk_key, chunks_to_read, page
from leadedge.merge import merged_request
from tables.merged_requests import merged_requests
from tables.request_history import request_history

MAX_PAGE = 1000


def _not_found(view: View, request_id: str) -> Response:
    return view.json({"error": f"no request with id {request_id!r}"}, status=404)


@app.page("/requests/{request_id}")
class RequestView(View):
    """`GET /requests/{id}`: the merged request, 404 when unknown."""

    @app.table_route(table=merged_requests, match_info="request_id")
    async def get(self: View, request: Request, *args: Any, **params: Any) -> Response:
        """Answer from the local table partition that owns the id."""
        request_id = request.match_info["request_id"]
        state = merged_requests.get(request_id)
        if state is None:
            return _not_found(self, request_id)
        return self.json(merged_request(state))


def _int_param(request: Request, name: str, default: int, maximum: int) -> int | str:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        return f"query parameter {name!r} must be an integer from 0 to {maximum}, not {raw!r}"
    return int(raw)


@app.page("/requests/{request_id}/history")
class HistoryView(View):
    """`GET /requests/{id}/history?offset=0&limit=100`: the applied events, oldest first."""

    @app.table_route(table=merged_requests, match_info="request_id")
    async def get(self: View, request: Request, *args: Any, **params: Any) -> Response:
        """The latest events (at least LEADEDGE_HISTORY_LENGTH), saying how many were dropped."""
        request_id = request.match_info["request_id"]
        offset = _int_param(request, "offset", 0, 10**9)
        limit = _int_param(request, "limit", MAX_PAGE, MAX_PAGE)
        for problem in (offset, limit):
            if isinstance(problem, str):
                return self.json({"error": problem}, status=400)
        assert isinstance(offset, int) and isinstance(limit, int)
        state = merged_requests.get(request_id)
        if state is None:
            return _not_found(self, request_id)
        total = state.get(SEQUENCE, 0)
        events: list[dict[str, Any]] = []
        for chunk in chunks_to_read(total, settings.history_length):
            events.extend(request_history.get(chunk_key(request_id, chunk)) or [])
        return self.json({"id": request_id, **page(events, total, offset, limit)})


def _recovery() -> Recovery:
    # The recovery service is on the concrete TableManager, not on its interface.
    return cast(TableManager, app.tables).recovery


def recovery_remaining() -> int:
    """Changelog records this worker still has to read into its tables."""
    recovery = _recovery()
    return sum(
        max(recovery.active_highwaters.get(tp, 0) - offset, 0)
        for tp, offset in recovery.active_offsets.items()
    )


@app.page("/health")
class HealthView(View):
    """`GET /health`: 200 when serving; 503 naming what it waits for while recovering."""

    async def get(self, request: Request) -> Response:
        """Ready once the tables are recovered and no rebalance is under way."""
        recovery = _recovery()
        waiting_for = []
        if app.rebalancing:
            waiting_for.append("the consumer group to finish rebalancing")
        if recovery.in_recovery:
            tables = ", ".join(sorted(t.name for t in recovery.actives_for_table)) or "tables"
            waiting_for.append(
                f"changelog recovery of {tables}: {recovery_remaining()} records left"
            )
        if waiting_for:
            return self.json({"status": "recovering", "waiting_for": waiting_for}, status=503)
        return self.json({"status": "ok"})


@app.page("/metrics")
class MetricsView(View):
    """`GET /metrics`: Prometheus text format."""

    async def get(self, request: Request) -> Response:
        """Counters of the agents plus the recovery progress at this moment."""
        metrics.recovery_in_progress.set(1 if _recovery().in_recovery else 0)
        metrics.recovery_remaining_records.set(recovery_remaining())
        return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")
