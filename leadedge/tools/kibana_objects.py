"""The Kibana dashboard as code: data views, Lens charts, a map and the dashboard.

`python -m leadedge.tools.kibana_objects > kibana/leadedge.ndjson` writes the saved objects
that `leadedge kibana import` loads; a test checks the file is up to date and that every
field a chart uses exists in the index templates.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from leadedge.tools.kibana_lens import (
    CORE_VERSION,
    RECORDS,
    date_column,
    lens,
    metric_column,
    terms_column,
    xy,
)

REQUESTS = "leadedge-requests"
STATS = "leadedge-stats"
DASHBOARD = "leadedge-overview"
PANEL_VERSION = "8.11.0"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def data_view(view_id: str, title: str, time_field: str, name: str) -> dict[str, Any]:
    """An index pattern over an alias, with its time field."""
    return {
        "id": view_id,
        "type": "index-pattern",
        "coreMigrationVersion": CORE_VERSION,
        "typeMigrationVersion": "8.0.0",
        "attributes": {"title": title, "name": name, "timeFieldName": time_field},
        "references": [],
    }


def over_time_by_source(lens_id: str, title: str, series: str, field: str) -> dict[str, Any]:
    """A per-minute stats measure, summed, one series per source."""
    columns = {
        "time": date_column("@timestamp"),
        "source": terms_column("source", "Source", "value"),
        "value": metric_column("sum", field, title),
    }
    return lens(lens_id, title, STATS, columns, "lnsXY", xy(series, "time", "value", "source"))


def top_values(lens_id: str, title: str, field: str, label: str, pie: bool) -> dict[str, Any]:
    """The ten most frequent values of a field among merged requests."""
    columns = {
        "group": terms_column(field, label, "count"),
        "count": metric_column("count", RECORDS, "Requests"),
    }
    if not pie:
        return lens(
            lens_id, title, REQUESTS, columns, "lnsXY", xy("bar_horizontal", "group", "count")
        )
    visualization = {
        "shape": "donut",
        "layers": [
            {
                "layerId": "layer",
                "layerType": "data",
                "primaryGroups": ["group"],
                "metrics": ["count"],
                "numberDisplay": "percent",
                "categoryDisplay": "default",
                "legendDisplay": "default",
            }
        ],
    }
    return lens(lens_id, title, REQUESTS, columns, "lnsPie", visualization)


def revenue() -> dict[str, Any]:
    """The sum of `price` over the merged requests in the time range."""
    columns = {"revenue": metric_column("sum", "price", "Revenue (sum of price)")}
    visualization = {"layerId": "layer", "layerType": "data", "metricAccessor": "revenue"}
    return lens("leadedge-revenue", "Revenue", REQUESTS, columns, "lnsMetric", visualization)


def requests_map() -> dict[str, Any]:
    """Merged requests on a map, gridded by `geo.location`, sized by count."""
    grid = {
        "id": "requests",
        "type": "GEOJSON_VECTOR",
        "label": "Requests",
        "minZoom": 0,
        "maxZoom": 24,
        "alpha": 0.75,
        "visible": True,
        "includeInFitToBounds": True,
        "sourceDescriptor": {
            "id": "requests-grid",
            "type": "ES_GEO_GRID",
            "geoField": "geo.location",
            "requestType": "point",
            "resolution": "COARSE",
            "indexPatternRefName": "layer_1_source_index_pattern",
            "metrics": [{"type": "count"}, {"type": "sum", "field": "price"}],
            "applyGlobalQuery": True,
            "applyGlobalTime": True,
            "applyForceRefresh": True,
        },
        "style": {"type": "VECTOR", "properties": {}, "isTimeAware": True},
    }
    basemap = {
        "id": "basemap",
        "type": "EMS_VECTOR_TILE",
        "label": None,
        "minZoom": 0,
        "maxZoom": 24,
        "alpha": 1,
        "visible": True,
        "sourceDescriptor": {"type": "EMS_TMS", "isAutoSelect": True},
        "style": {"type": "EMS_VECTOR_TILE", "color": ""},
    }
    state = {
        "zoom": 1.4,
        "center": {"lon": 0, "lat": 25},
        "timeFilters": {"from": "now-1h", "to": "now"},
        "refreshConfig": {"isPaused": False, "interval": 5000},
        "query": {"query": "", "language": "kuery"},
        "filters": [],
        "settings": {"autoFitToDataBounds": False},
    }
    return {
        "id": "leadedge-requests-map",
        "type": "map",
        "coreMigrationVersion": CORE_VERSION,
        "typeMigrationVersion": "8.4.0",
        "attributes": {
            "title": "Requests by location",
            "description": "",
            "layerListJSON": _json([basemap, grid]),
            "mapStateJSON": _json(state),
            "uiStateJSON": _json({"isLayerTOCOpen": False, "openTOCDetails": []}),
        },
        "references": [
            {"type": "index-pattern", "id": REQUESTS, "name": "layer_1_source_index_pattern"}
        ],
    }


# (object, x, y, width, height) on Kibana's 48-column grid.
LAYOUT = [
    ("leadedge-requests-per-minute", 0, 0, 24, 12),
    ("leadedge-clicks-per-minute", 24, 0, 24, 12),
    ("leadedge-requests-map", 0, 12, 24, 16),
    ("leadedge-top-domains", 24, 12, 24, 16),
    ("leadedge-browsers", 0, 28, 16, 14),
    ("leadedge-operating-systems", 16, 28, 16, 14),
    ("leadedge-revenue", 32, 28, 16, 14),
]


def dashboard(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every chart and the map on one page, refreshing every 5 s over the last hour."""
    panels, references = [], []
    for index, (object_id, x, y, w, h) in enumerate(LAYOUT, start=1):
        panel_index = str(index)
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": objects[object_id]["type"],
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
                "panelIndex": panel_index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{panel_index}",
            }
        )
        references.append(
            {
                "type": objects[object_id]["type"],
                "id": object_id,
                "name": f"{panel_index}:panel_{panel_index}",
            }
        )
    search = {"query": {"query": "", "language": "kuery"}, "filter": []}
    return {
        "id": DASHBOARD,
        "type": "dashboard",
        "coreMigrationVersion": CORE_VERSION,
        "typeMigrationVersion": "8.7.0",
        "attributes": {
            "title": "leadedge: live overview",
            "description": "Merged requests and per-minute aggregates, refreshed every 5 s.",
            "panelsJSON": _json(panels),
            "optionsJSON": _json(
                {"useMargins": True, "syncColors": True, "hidePanelTitles": False}
            ),
            "timeRestore": True,
            "timeFrom": "now-1h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 5000},
            "kibanaSavedObjectMeta": {"searchSourceJSON": _json(search)},
        },
        "references": references,
    }


def saved_objects() -> list[dict[str, Any]]:
    """Data views first, then the charts, then the dashboard that references them."""
    charts = [
        over_time_by_source(
            "leadedge-requests-per-minute", "New requests per minute", "bar_stacked", "new_requests"
        ),
        over_time_by_source(
            "leadedge-clicks-per-minute", "Clicks per minute", "line", "counters.clicks"
        ),
        requests_map(),
        top_values("leadedge-top-domains", "Top domains", "domain", "Domain", pie=False),
        top_values("leadedge-browsers", "Browsers", "user_agent.name", "Browser", pie=True),
        top_values(
            "leadedge-operating-systems", "Operating systems", "user_agent.os.name", "OS", pie=True
        ),
        revenue(),
    ]
    views = [
        data_view(REQUESTS, REQUESTS, "updated_at", "leadedge merged requests"),
        data_view(STATS, STATS, "@timestamp", "leadedge per-minute stats"),
    ]
    return [*views, *charts, dashboard({chart["id"]: chart for chart in charts})]


def ndjson() -> bytes:
    """The saved objects, one JSON object a line, as Kibana's import takes them."""
    return b"".join(
        orjson.dumps(item, option=orjson.OPT_SORT_KEYS) + b"\n" for item in saved_objects()
    )


if __name__ == "__main__":
    sys.stdout.buffer.write(ndjson())
