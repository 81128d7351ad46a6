"""Checks shared by the end-to-end tests: merged requests served and indexed as expected,
and what the archive holds."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from tests.integration.stack import Endpoints
from tests.integration.worker import Names, Worker, wait_for

ARCHIVE_BUCKET = "leadedge"
# The headers of a JSON body sent to the worker.
JSON = {"Content-Type": "application/json"}


def wait_served_as_reference(
    worker: Worker,
    expected: dict[str, Any],
    timeout: float,
    explain: Callable[[str], str] | None = None,
) -> None:
    """Until `GET /requests/{id}` returns each expected merged request.

    On a timeout the error names one that differs, and `explain(id)` adds what it says.
    """
    pending = dict(expected)

    def all_served() -> bool:
        for request_id in list(pending):
            status, body = worker.get(f"/requests/{request_id}")
            if status == 200 and body == pending[request_id]:
                del pending[request_id]
        return not pending

    try:
        wait_for(all_served, timeout, f"{len(expected)} merged requests over HTTP", interval=1)
    except AssertionError as exc:
        request_id = next(iter(pending))
        more = f"; {explain(request_id)}" if explain is not None else ""
        raise AssertionError(
            f"{exc}: {len(pending)} differ, e.g. {request_id}: expected {pending[request_id]}, "
            f"served {worker.get(f'/requests/{request_id}')}{more}"
        ) from None


def wait_indexed_as_reference(
    endpoints: Endpoints,
    names: Names,
    expected: dict[str, Any],
    timeout: float,
    interval: float = 1,
) -> None:
    """Until the alias holds exactly the expected merged requests, by id."""
    es = Elasticsearch(endpoints.es_url)

    def all_indexed() -> bool:
        es.indices.refresh(index=names.es_alias)
        hits = es.search(index=names.es_alias, size=len(expected) + 100, query={"match_all": {}})[
            "hits"
        ]["hits"]
        return {hit["_id"]: hit["_source"] for hit in hits} == expected

    wait_for(all_indexed, timeout, "every merged request in Elasticsearch", interval=interval)


def archived_lines(endpoints: Endpoints, names: Names) -> list[dict[str, Any]]:
    s3 = endpoints.s3_client()
    lines: list[dict[str, Any]] = []
    listing = s3.list_objects_v2(Bucket=ARCHIVE_BUCKET, Prefix=names.s3_prefix + "/")
    for item in listing.get("Contents", []):
        body = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=item["Key"])["Body"].read()
        lines += [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
    return lines
