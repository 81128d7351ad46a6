from __future__ import annotations

from leadedge.rules.models import DEFAULT_PROJECT, Event, request_key


def test_a_request_is_keyed_by_its_id_in_the_default_project_and_by_project_and_id_elsewhere() -> (
    None
):
    assert request_key(DEFAULT_PROJECT, "abc") == "abc"
    assert request_key("alpha", "abc") == "alpha\x1fabc"
    assert request_key("alpha", "abc") != request_key("beta", "abc")
    event = Event(id="abc", project="alpha", ts_ms=0, event_id=None)
    assert event.key == "alpha\x1fabc"
