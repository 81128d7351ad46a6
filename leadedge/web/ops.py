"""`GET /health`, `GET /metrics`, `GET /openapi.json`."""

from __future__ import annotations

import logging
from typing import Any, cast

from faust.transport.consumer import Consumer
from faust.web import Request, Response, View

from leadedge import health, metrics
from leadedge.engine.app import app
from leadedge.gate.access import Access
from leadedge.web.common import endpoint, not_ready_because, recovery, recovery_remaining
from leadedge.web.openapi import OPENAPI

log = logging.getLogger(__name__)


def crashed_services() -> dict[str, str]:
    """Each of the worker's own services and agents that crashed, and why."""
    services: list[Any] = [
        *(app._extra_service_instances or []),
        *app.agents.values(),
    ]
    return {
        service.shortlabel: repr(service.crash_reason) for service in services if service.crashed
    }


@app.page("/health")
class HealthView(View):
    """200 when serving (`degraded` names parts that are retrying); 503 otherwise."""

    @endpoint("/health", access=Access.PUBLIC)
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """Readiness: tables recovered, no rebalance under way, no service crashed."""
        reasons = not_ready_because()
        crashed = crashed_services()
        if reasons or crashed:
            answer: dict[str, Any] = {"status": "failed" if crashed else "recovering"}
            if reasons:
                answer["waiting_for"] = reasons
            if crashed:
                answer["crashed"] = crashed
            response = self.json(answer, status=503)
            response.headers["Retry-After"] = "1"
            return response
        degraded = health.degraded()
        skipped = health.skipped()
        if degraded or skipped:
            answer = {"status": "degraded"}
            if degraded:
                answer["degraded"] = degraded
            if skipped:
                # Records lost to retention before they were read: the log names them.
                answer["skipped_records"] = skipped
            return self.json(answer)
        return self.json({"status": "ok"})


def _update_lag() -> None:
    consumer = cast(Consumer, app.consumer)
    metrics.consumer_lag.clear()
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            continue
        read = consumer._read_offset.get(tp)
        if highwater is None:
            continue
        lag = highwater - (read + 1 if read is not None else 0)
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))


@app.page("/metrics")
class MetricsView(View):
    """Prometheus text format."""

    @endpoint("/metrics", access=Access.OPERATOR)
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """Counters and histograms, plus lag and recovery progress at this moment."""
        metrics.recovery_in_progress.set(1 if recovery().in_recovery else 0)
        metrics.recovery_remaining_records.set(recovery_remaining())
        _update_lag()
        return self.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")


@app.page("/openapi.json")
class OpenApiView(View):
    """The API's description, for clients and for schemathesis."""

    @endpoint("/openapi.json")
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """OpenAPI 3.0."""
        return self.json(OPENAPI)
