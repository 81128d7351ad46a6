"""The collector's verdict is the merge agent's, for every event a new request could take."""

from __future__ import annotations

from leadedge.web.requests import validate_batch


def test_the_collector_refuses_what_the_merge_would_with_the_same_reason() -> None:
    body = [
        {"id": "ok", "clicks": "+1"},
        {"id": "big", "clicks": "+" + "9" * 70},
        {"id": "sum", "n": "+99999999999999999999"},
        {"id": "when", "ts": 10**17},
        {"id": "e", "event_id": True},
        {"id": "\u00e9" * 256, "x": 1},
        {"id": "ctl\u0007"},
    ]
    accepted, rejected = validate_batch(body, "alpha")
    assert [request_id for request_id, _ in accepted] == ["ok"]
    assert [(r["index"], r["reason"]) for r in rejected] == [
        (1, "out_of_range"),
        (2, "out_of_range"),
        (3, "bad_ts"),
        (4, "bad_event_id"),
        (5, "id_too_long"),
        (6, "id_control_char"),
    ]
    assert all(r["detail"] for r in rejected)
