"""The OpenAPI document says what the worker serves, and who may call it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from leadedge.engine.app import app
from leadedge.gate.access import ROUTES, Access
from leadedge.web.openapi import OPENAPI

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
Route = tuple[str, str]


@pytest.fixture(scope="module", autouse=True)
def discovered() -> None:
    """Every page registered, as the worker registers them at start."""
    app.discover()


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def documented() -> set[Route]:
    return {(method, path) for method, path, _ in operations()}


def mounted() -> set[Route]:
    """What the web server routes (HEAD is answered as GET, see `access_of`)."""
    routes = app.web.web_app.router.routes()  # type: ignore[attr-defined]
    return {
        (route.method, str(route.resource.canonical)) for route in routes if route.method != "HEAD"
    }


def security_of(operation: dict[str, Any]) -> list[dict[str, list[str]]]:
    """The operation's own requirement, else the document's (OpenAPI 3.0, 4.7.10)."""
    found: list[dict[str, list[str]]] = operation.get("security", OPENAPI.get("security", []))
    return found


def test_every_route_mounted_is_one_the_guard_knows() -> None:
    assert mounted(), "no page registered"
    assert mounted() == set(ROUTES)


def test_every_documented_operation_is_served() -> None:
    assert documented() <= mounted(), documented() - mounted()


def test_every_mounted_route_is_documented() -> None:
    assert mounted() - documented() == set()


def test_health_is_the_one_public_route_and_documented_without_security() -> None:
    public = {route for route, access in ROUTES.items() if access is Access.PUBLIC}
    assert public == {("GET", "/health")}
    assert OPENAPI["paths"]["/health"]["get"]["security"] == []


def test_every_operation_but_health_requires_the_api_key() -> None:
    keyless = {
        (method, path) for method, path, operation in operations() if not security_of(operation)
    }
    assert keyless == {("GET", "/health")}


def test_the_document_is_keyless_only_where_the_guard_is() -> None:
    # The other direction holds: no route the guard lets anyone call is said to need a key.
    for method, path, operation in operations():
        if ROUTES.get((method, path)) is Access.PUBLIC:
            assert security_of(operation) == [], (method, path)
    assert OPENAPI["security"] == [{"bearer": []}]


def test_every_security_requirement_names_a_declared_bearer_scheme() -> None:
    schemes = OPENAPI["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    for method, path, operation in operations():
        for requirement in security_of(operation):
            assert set(requirement) <= set(schemes), (method, path, requirement)


def test_every_operation_that_needs_a_key_documents_401_and_operator_routes_403() -> None:
    for method, path, operation in operations():
        responses = operation["responses"]
        if security_of(operation):
            assert "401" in responses, (method, path)
        if ROUTES.get((method, path)) is Access.OPERATOR:
            assert "403" in responses, (method, path)


def test_every_path_parameter_is_declared_required_on_each_operation() -> None:
    for method, path, operation in operations():
        declared = {
            parameter["name"]: parameter
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "path"
        }
        assert set(declared) == set(re.findall(r"{([^}]+)}", path)), (method, path)
        assert all(parameter["required"] is True for parameter in declared.values())


def test_the_lookups_answer_503_while_the_owner_is_unknown() -> None:
    for path in ("/requests/{request_id}", "/requests/{request_id}/history"):
        assert "503" in OPENAPI["paths"][path]["get"]["responses"], path


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref!r} points outside the document"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref!r} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_has_openapis_required_fields_and_every_ref_resolves() -> None:
    assert re.fullmatch(r"3\.0\.\d+", OPENAPI["openapi"])
    assert OPENAPI["info"]["title"] and OPENAPI["info"]["version"]
    assert OPENAPI["paths"] and all(path.startswith("/") for path in OPENAPI["paths"])
    for method, path, operation in operations():
        assert operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            assert response["description"], (method, path, status)
    for ref in refs(OPENAPI):
        resolve(OPENAPI, ref)
    # Plain JSON: what the view serves is the document itself.
    assert orjson.loads(orjson.dumps(OPENAPI)) == OPENAPI


def test_the_document_validates_as_openapi_3_0() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(OPENAPI, cls=validator.OpenAPIV30SpecValidator)


async def test_get_openapi_json_serves_the_document() -> None:
    from leadedge.web.ops import OpenApiView

    view = OpenApiView(app, app.web)
    handler: Any = OpenApiView.get
    while hasattr(handler, "__wrapped__"):
        handler = handler.__wrapped__
    response = await handler(view, object(), project="alpha")
    assert response.status == 200 and response.content_type == "application/json"
    assert orjson.loads(response.body) == OPENAPI
