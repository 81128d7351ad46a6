"""HTTP: look a merged request up on whichever worker owns it, and health."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from leadedge.app import app
from leadedge.merge import merged_request
from tables.merged_requests import merged_requests


@app.page("/requests/{request_id}")
class RequestView(View):
    """`GET /requests/{id}`: the merged request, 404 when unknown."""

    @app.table_route(table=merged_requests, match_info="request_id")
    async def get(self: View, request: Request, *args: Any, **params: Any) -> Response:
        """Answer from the local table partition that owns the id."""
        request_id = request.match_info["request_id"]
        state = merged_requests.get(request_id)
        if state is None:
            return self.json({"error": f"no request with id {request_id!r}"}, status=404)
        return self.json(merged_request(state))


@app.page("/health")
class HealthView(View):
    """`GET /health`: 200 while the worker runs."""

    async def get(self, request: Request) -> Response:
        """Report the worker as up."""
        return self.json({"status": "ok"})
