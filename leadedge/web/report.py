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

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.serializer import OrjsonSerializer
from faust.web import Request, Response, View
from mode import Service

from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection
from leadedge.engine.app import app, elasticsearch, settings
from leadedge.rules.merge import format_time
from leadedge.rules.stats import WINDOW_MS, add_numbers
from leadedge.web.common import endpoint, error, int_param, unavailable

log = logging.getLogger(__name__)

MAX_MINUTES = 1440
STATIC = files("leadedge.web") / "static"


class StatsReader:
    """A lazily opened Elasticsearch client for the stats alias."""

    def __init__(self, url: str | ElasticsearchConnection, alias: str) -> None:
        self.url = url
        self.alias = alias
        self._client: AsyncElasticsearch | None = None

    @property
    def client(self) -> AsyncElasticsearch:
        """The client, opened on first use."""
        if self._client is None:
            self._client = as_es_connection(self.url).client(
                serializers={"application/json": OrjsonSerializer()}, request_timeout=10
            )
        return self._client

    async def windows(self, project: str, since_ms: int) -> list[dict[str, Any]]:
        """The project's windows that start at or after `since_ms`, oldest first."""
        try:
            answer = await self.client.search(
                index=self.alias,
                size=10_000,
                sort=[{"@timestamp": "asc"}],
                query={
                    "bool": {
                        "filter": [
                            {"term": {"project": project}},
                            {"range": {"@timestamp": {"gte": since_ms, "format": "epoch_millis"}}},
                        ]
                    }
                },
            )
        except NotFoundError:
            return []  # no window indexed yet: the alias does not exist
        return [hit["_source"] for hit in answer["hits"]["hits"]]

    async def close(self) -> None:
        """Close the client if it was opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None


stats_reader = StatsReader(elasticsearch, settings.stats_alias)


@app.service
class StatsReaderService(Service):
    """Closes the report's Elasticsearch client when the worker stops."""

    async def on_stop(self) -> None:
        """Close the client."""
        await stats_reader.close()


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
            windows = await stats_reader.windows(project, since)
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
