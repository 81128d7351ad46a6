"""Lens charts as saved objects: one data layer over one data view (Kibana 8.9+ format)."""

from __future__ import annotations

from typing import Any

CORE_VERSION = "8.8.0"
# Lens' count operation reads this pseudo field.
RECORDS = "___records___"


def date_column(field: str) -> dict[str, Any]:
    """A date histogram at Kibana's automatic interval."""
    return {
        "label": field,
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def terms_column(field: str, label: str, order_by: str, size: int = 10) -> dict[str, Any]:
    """The top values of a keyword field."""
    return {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
        },
    }


def metric_column(operation: str, field: str, label: str) -> dict[str, Any]:
    """A count (field `___records___`) or a sum of a numeric field."""
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }


def lens(
    lens_id: str,
    title: str,
    view_id: str,
    columns: dict[str, dict[str, Any]],
    visualization_type: str,
    visualization: dict[str, Any],
) -> dict[str, Any]:
    """A Lens chart with one layer (`layer`) over one data view."""
    return {
        "id": lens_id,
        "type": "lens",
        "coreMigrationVersion": CORE_VERSION,
        "typeMigrationVersion": "8.9.0",
        "attributes": {
            "title": title,
            "description": "",
            "visualizationType": visualization_type,
            "state": {
                "datasourceStates": {
                    "formBased": {
                        "layers": {
                            "layer": {
                                "columns": columns,
                                "columnOrder": list(columns),
                                "incompleteColumns": {},
                            }
                        }
                    }
                },
                "visualization": visualization,
                "query": {"query": "", "language": "kuery"},
                "filters": [],
                "internalReferences": [],
                "adHocDataViews": {},
            },
        },
        "references": [
            {"type": "index-pattern", "id": view_id, "name": "indexpattern-datasource-layer-layer"}
        ],
    }


def xy(series_type: str, x: str, y: str, split: str | None = None) -> dict[str, Any]:
    """An XY chart of one layer: `y` over `x`, one series per value of `split`."""
    layer = {
        "layerId": "layer",
        "layerType": "data",
        "seriesType": series_type,
        "xAccessor": x,
        "accessors": [y],
    }
    if split:
        layer["splitAccessor"] = split
    return {
        "preferredSeriesType": series_type,
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "layers": [layer],
    }
