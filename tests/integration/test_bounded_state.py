"""Input that would grow one request's state past Kafka's record limit: refused, not a
crash loop."""

from __future__ import annotations

import orjson
import pytest

from tests.integration.checks import JSON
from tests.integration.conftest import WorkerFactory
from tests.integration.kafka_io import read_all
from tests.integration.stack import Endpoints
from tests.integration.worker import Names, wait_for

pytestmark = pytest.mark.integration


def test_huge_and_long_requests_are_bounded_and_the_worker_merges_on(
    start_worker: WorkerFactory, endpoints: Endpoints
) -> None:
    names = Names()
    worker = start_worker(names)
    # 20 events of 60 KB for one id, each a new field: 1.2 MB of merged fields.
    for half in range(2):
        body = [{"id": "huge", f"pad{half}-{n}": "x" * 60_000} for n in range(10)]
        status, answer, _ = worker.call("POST", "/requests", orjson.dumps(body), JSON)
        assert (status, answer["accepted"]) == (202, 10)
    # 1,000 events for one id, each with a 256-character event_id.
    for part in range(2):
        body = [
            {"id": "long", "clicks": "+1", "event_id": f"{part}-{n:05d}-" + "e" * 248}
            for n in range(500)
        ]
        status, answer, _ = worker.call("POST", "/requests", orjson.dumps(body), JSON)
        assert (status, answer["accepted"]) == (202, 500)
    status, answer, _ = worker.call(
        "POST", "/requests", orjson.dumps({"id": "x", "event_id": "e" * 257}), JSON
    )
    assert answer["rejected"][0]["reason"] == "bad_event_id"
    status, _, _ = worker.call("POST", "/requests", b'{"id":"after","clicks":"+1"}', JSON)
    assert status == 202

    wait_for(lambda: worker.get("/requests/after")[0] == 200, 90, "a later request merged")
    long = wait_for(
        lambda: (r := worker.get("/requests/long"))[0] == 200 and r[1]["event_count"] == 1000 and r,
        90,
        "all 1,000 events of the long request",
    )
    assert long[1]["clicks"] == 1000
    status, huge = worker.get("/requests/huge")
    assert status == 200 and 5 <= huge["event_count"] < 20
    refused = 20 - huge["event_count"]
    dead = read_all(endpoints.broker, names.dlq_topic, expect=refused, timeout=60)
    reasons = [dict(record.headers)["leadedge.error.reason"] for record in dead]
    assert reasons == [b"state_too_large"] * refused
    assert worker.get("/health") == (200, {"status": "ok"})
    assert worker.process is not None and worker.process.poll() is None
    status, history = worker.get("/requests/huge/history")
    assert status == 200 and all("fields_omitted_bytes" in e for e in history["events"])
