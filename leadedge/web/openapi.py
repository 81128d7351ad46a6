"""The HTTP API described as OpenAPI 3.0 (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "What is wrong",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
_EVENT = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {
            "oneOf": [{"type": "string", "minLength": 1, "maxLength": 256}, {"type": "integer"}]
        },
        "ts": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
        "event_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    },
    "additionalProperties": True,
}
_MERGED = {
    "type": "object",
    "required": ["id", "project", "event_count"],
    "additionalProperties": True,
}

_COUNTS = {
    "events": {"type": "integer"},
    "new_requests": {"type": "integer"},
    "counters": {"type": "object", "additionalProperties": {"type": "number"}},
}
_STATS = {
    "type": "object",
    "required": ["minutes", "from", "to", "sources", "windows", "totals"],
    "properties": {
        "minutes": {"type": "integer"},
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "windows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "source": {"type": "string"},
                    **_COUNTS,
                },
            },
        },
        "totals": {"type": "object", "properties": _COUNTS},
    },
}

# With keys on, the report page and what it loads take the key as a bearer token or as
# the password of HTTP Basic (what a browser can send).
_KEY_OR_PASSWORD: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
_PAGE: dict[str, Any] = {
    "summary": "The live report page",
    "security": _KEY_OR_PASSWORD,
    "responses": {
        "200": {"description": "HTML", "content": {"text/html": {}}},
        "401": _ERROR,
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "leadedge",
        "version": "0.1.0",
        "description": "Merged requests from request-history events.",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            # How a browser opens the report page: the key as the password.
            "basic": {"type": "http", "scheme": "basic"},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/requests": {
            "post": {
                "summary": "Collect one event or an array of up to 500",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _EVENT,
                                    {
                                        "type": "array",
                                        "items": _EVENT,
                                        "minItems": 1,
                                        "maxItems": 500,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "Accepted events are in Kafka; rejected ones are listed",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["accepted", "rejected"],
                                    "properties": {
                                        "accepted": {"type": "integer"},
                                        "rejected": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["index", "reason", "detail"],
                                                "properties": {
                                                    "index": {"type": "integer"},
                                                    "reason": {"type": "string"},
                                                    "detail": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "408": _ERROR,
                    "413": _ERROR,
                    "415": _ERROR,
                },
            }
        },
        "/requests/{request_id}": {
            "get": {
                "summary": "The merged request, from whichever worker owns the id",
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "The merged request",
                        "content": {"application/json": {"schema": _MERGED}},
                    },
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/requests/{request_id}/history": {
            "get": {
                "summary": "The id's applied events, oldest first",
                "parameters": [
                    _ID,
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of the timeline",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "total", "dropped", "truncated", "events"],
                                    "properties": {
                                        "id": {"type": "string"},
                                        "total": {"type": "integer"},
                                        "dropped": {"type": "integer"},
                                        "truncated": {"type": "boolean"},
                                        "offset": {"type": "integer"},
                                        "events": {"type": "array", "items": {"type": "object"}},
                                    },
                                }
                            }
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Readiness",
                "security": [],
                "responses": {
                    "200": {"description": "Serving"},
                    "503": {"description": "Recovering; says what it waits for"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (an operator key when keys are on)",
                "responses": {
                    "200": {"description": "Text exposition format"},
                    "401": _ERROR,
                    "403": _ERROR,
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "The caller's per-minute aggregates, by source, from Elasticsearch",
                "parameters": [
                    {
                        "name": "minutes",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1440},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Windows of the last `minutes` (default 30), oldest first",
                        "content": {"application/json": {"schema": _STATS}},
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/": {"get": _PAGE},
        "/report": {"get": _PAGE},
        "/static/chart.umd.min.js": {
            "get": {
                "summary": "The chart library the report page loads",
                "security": _KEY_OR_PASSWORD,
                "responses": {
                    "200": {"description": "JavaScript", "content": {"text/javascript": {}}},
                    "401": _ERROR,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3", "content": {"application/json": {}}},
                    "401": _ERROR,
                },
            }
        },
    },
}
