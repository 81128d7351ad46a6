"""Kibana as code: the saved objects parse, use only mapped fields, and import well formed."""

from __future__ import annotations

import email.parser
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from leadedge.exceptions import KibanaError
from leadedge.sinks.es_mapping import requests_template
from leadedge.sinks.es_stats import stats_template
from leadedge.tools.kibana import import_saved_objects
from leadedge.tools.kibana_objects import REQUESTS, STATS, ndjson

NDJSON = Path(__file__).parents[4] / "kibana" / "leadedge.ndjson"
NUMERIC = {"long", "integer", "double", "float", "scaled_float"}


def objects() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in NDJSON.read_bytes().splitlines() if line.strip()]


def fields_of(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        if "properties" in spec:
            found.update(fields_of(spec, f"{prefix}{name}."))
        else:
            found[f"{prefix}{name}"] = spec["type"]
    # Runtime fields declared up front (the stats counters the dashboard charts).
    if not prefix:
        found.update({name: spec["type"] for name, spec in mapping.get("runtime", {}).items()})
    return found


MAPPED = {
    REQUESTS: fields_of(
        requests_template(
            REQUESTS,
            ipaddress_field="ipaddress",
            useragent_field="useragent",
            refresh_interval="1s",
        )["template"]["mappings"]
    ),
    STATS: fields_of(stats_template(STATS, refresh_interval="1s")["template"]["mappings"]),
}


def test_the_file_parses_and_is_what_the_generator_writes() -> None:
    assert NDJSON.read_bytes() == ndjson(), "run: python -m leadedge.tools.kibana_objects > " + str(
        NDJSON.relative_to(NDJSON.parents[1])
    )
    found = objects()
    ids = [(item["type"], item["id"]) for item in found]
    assert len(ids) == len(set(ids))
    kinds = {item["type"] for item in found}
    assert {"index-pattern", "lens", "map", "dashboard"} <= kinds
    for item in found:
        for reference in item["references"]:
            assert (reference["type"], reference["id"]) in ids, reference


def test_data_views_and_the_dashboard_refresh() -> None:
    views = {
        item["id"]: item["attributes"] for item in objects() if item["type"] == "index-pattern"
    }
    assert views[REQUESTS]["timeFieldName"] == "updated_at"
    assert views[STATS]["timeFieldName"] == "@timestamp"
    for view_id, attributes in views.items():
        assert attributes["timeFieldName"] in MAPPED[view_id]
    [board] = [item for item in objects() if item["type"] == "dashboard"]
    assert board["attributes"]["refreshInterval"] == {"pause": False, "value": 5000}
    panels = orjson.loads(board["attributes"]["panelsJSON"])
    names = {ref["name"] for ref in board["references"]}
    assert {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels} == names


def used_fields(item: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data view id, field, how it is used) for every field a chart or map reads."""
    views = {ref["name"]: ref["id"] for ref in item["references"]}
    used = []
    if item["type"] == "lens":
        layers = item["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            view = views[f"indexpattern-datasource-layer-{layer_id}"]
            for column in layer["columns"].values():
                if column["sourceField"] != "___records___":
                    used.append((view, column["sourceField"], column["operationType"]))
    elif item["type"] == "map":
        for layer in orjson.loads(item["attributes"]["layerListJSON"]):
            source = layer["sourceDescriptor"]
            if "indexPatternRefName" in source:
                view = views[source["indexPatternRefName"]]
                used.append((view, source["geoField"], "geo"))
                used.extend(
                    (view, m["field"], m["type"]) for m in source["metrics"] if "field" in m
                )
    return used


def test_every_field_a_chart_uses_is_mapped_with_a_fitting_type() -> None:
    used = [use for item in objects() for use in used_fields(item)]
    assert {field for _, field, _ in used} >= {
        "geo.location",
        "domain",
        "user_agent.name",
        "user_agent.os.name",
        "price",
        "source",
        "counters.clicks",
        "new_requests",
        "@timestamp",
    }
    wanted = {
        "sum": NUMERIC,
        "terms": {"keyword"},
        "date_histogram": {"date"},
        "geo": {"geo_point"},
    }
    for view, field, how in used:
        assert field in MAPPED[view], f"{field} is not in the {view} template"
        assert MAPPED[view][field] in wanted[how], (view, field, how, MAPPED[view][field])


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    answers: ClassVar[list[tuple[int, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).requests.append(
            {
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": self.rfile.read(length),
            }
        )
        status, body = type(self).answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def kibana() -> Iterator[tuple[str, type[Recorder]]]:
    Recorder.requests, Recorder.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder
    server.shutdown()
    server.server_close()


def test_the_import_is_a_multipart_post_with_the_xsrf_header(
    kibana: tuple[str, type[Recorder]],
) -> None:
    url, recorder = kibana
    recorder.answers = [
        (503, b'{"error":"starting"}'),
        (200, b'{"success":true,"successCount":10}'),
    ]
    result = import_saved_objects(url + "/", NDJSON, wait_s=30)
    assert result["successCount"] == 10
    assert len(recorder.requests) == 2  # 503 while Kibana starts: retried
    sent = recorder.requests[-1]
    assert sent["path"] == "/api/saved_objects/_import?overwrite=true"
    assert sent["headers"]["kbn-xsrf"] == "true"
    content_type = sent["headers"]["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + sent["body"]
    )
    [part] = message.get_payload()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "leadedge.ndjson"
    assert part.get_payload(decode=True) == NDJSON.read_bytes()


def test_a_refused_object_is_an_error_that_names_it(kibana: tuple[str, type[Recorder]]) -> None:
    url, recorder = kibana
    refusal = {
        "success": False,
        "successCount": 9,
        "errors": [{"type": "map", "id": "leadedge-requests-map", "error": {"type": "unknown"}}],
    }
    recorder.answers = [(200, orjson.dumps(refusal))]
    with pytest.raises(KibanaError, match="map leadedge-requests-map: unknown"):
        import_saved_objects(url, NDJSON)
    recorder.answers = [(400, b'{"message":"bad request"}')]
    with pytest.raises(KibanaError, match="answered 400"):
        import_saved_objects(url, NDJSON, wait_s=30)
