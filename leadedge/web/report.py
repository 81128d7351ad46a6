"""The report page (`GET /`, `/report`) and the per-minute aggregates it charts (`GET /stats`).

The page is static: it calls `/stats` every two seconds and the lookups on demand. With
keys on, the page itself needs a key too: the browser asks for it (Basic authentication,
the key as the password) and sends it with the page's own calls; a key typed into the
page (kept in the browser's local storage) is sent as a Bearer key instead. Chart.js is
vendored under `static/` (MIT, its license beside it): the page loads nothing from
elsewhere.
"""

from __future__ import annotations

import logging
import time
from importlib.resources import files
from typing import Any

from faust.web import Request, Response, View
from mode import Service

from leadedge.engine.app import app, settings, wiring
from leadedge.rules.merge import format_time
from leadedge.rules.stats import WINDOW_MS, add_numbers
from leadedge.web.common import endpoint, error, int_param, unavailable

log = logging.getLogger(__name__)

MAX_MINUTES = 1440
STATIC = files("leadedge.web") / "static"


@app.service
class StatsReaderService(Service):
    """Closes the report's Elasticsearch client when the worker stops."""

    async def on_stop(self) -> None:
        """Close the client."""
        await wiring.stats_reader.close()


def summarize(windows: list[dict[str, Any]], minutes: int, now_ms: int) -> dict[str, Any]:
    """What the page charts: each window, the sources, and the totals over the range."""
    end = now_ms - now_ms % WINDOW_MS
    totals: dict[str, Any] = {"events": 0, "new_requests": 0, "counters": {}}
    rows = []
    for doc in windows:
        rows.append(
            {
                "start": doc["window_start"],
                "source": doc["source"],
                "events": doc["events"],
                "new_requests": doc["new_requests"],
                "counters": doc.get("counters", {}),
            }
        )
        totals["events"] += doc["events"]
        totals["new_requests"] += doc["new_requests"]
        for name, amount in doc.get("counters", {}).items():
            totals["counters"][name] = add_numbers(totals["counters"].get(name, 0), amount)
    return {
        "minutes": minutes,
        "from": format_time(end - (minutes - 1) * WINDOW_MS),
        "to": format_time(end),
        "sources": sorted({row["source"] for row in rows}),
        "windows": rows,
        "totals": totals,
    }


@app.page("/stats")
class StatsView(View):
    """`GET /stats?minutes=30`: the caller's per-minute windows, from Elasticsearch."""

    @endpoint("/stats")
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """Windows of the last `minutes` (1 to 1440, default 30), by event time."""
        minutes = int_param(request, "minutes", 30, 1, MAX_MINUTES)
        if isinstance(minutes, str):
            return error(self, 400, minutes)
        now_ms = int(time.time() * 1000)
        since = now_ms - now_ms % WINDOW_MS - (minutes - 1) * WINDOW_MS
        try:
            windows = await wiring.stats_reader.windows(project, since)
        except Exception as exc:
            log.warning("reading %s failed: %r", settings.stats_alias, exc)
            return unavailable(self, f"Elasticsearch is not answering: {type(exc).__name__}")
        return self.json(summarize(windows, minutes, now_ms))


def _page(view: View) -> Response:
    return view.text((STATIC / "report.html").read_text("utf-8"), content_type="text/html")


@app.page("/")
class IndexView(View):
    """`GET /`: the report page."""

    @endpoint("/")
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """The page; its data calls carry the API key."""
        return _page(self)


@app.page("/report")
class ReportView(View):
    """`GET /report`: the report page."""

    @endpoint("/report")
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """The page; its data calls carry the API key."""
        return _page(self)


@app.page("/static/chart.umd.min.js")
class ChartScriptView(View):
    """The vendored Chart.js build."""

    @endpoint("/static/chart.umd.min.js")
    async def get(self, request: Request, *, project: str, **params: Any) -> Response:
        """Served with a day of caching: it changes only with a release."""
        script = (STATIC / "chart.umd.min.js").read_text("utf-8")
        response = self.text(script, content_type="application/javascript")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response
