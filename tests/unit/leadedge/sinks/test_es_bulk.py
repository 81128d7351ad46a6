"""The bulk wire format: versioned actions out, each item's outcome sorted back."""

from __future__ import annotations

import orjson
import pytest

from leadedge.sinks.es_bulk import WriteResult, bulk_body, document_from_message, sort_outcomes


def test_a_record_becomes_a_document_with_its_key_as_id_and_a_field_as_version() -> None:
    assert document_from_message(
        b"abc", b'{"id":"abc","event_count":3,"clicks":4}', "event_count"
    ) == (
        "abc",
        3,
        {"id": "abc", "event_count": 3, "clicks": 4},
    )
    assert document_from_message(b"w1", b'{"events":7}', "events")[1] == 7
    with pytest.raises(KeyError):
        document_from_message(b"abc", b'{"id":"abc"}', "event_count")
    with pytest.raises(ValueError, match="JSON object"):
        document_from_message(b"abc", b"[1]", "event_count")
    with pytest.raises(ValueError):
        document_from_message(b"abc", b"{not json", "event_count")


def test_every_write_carries_an_external_version_and_encoded_documents_go_as_they_are() -> None:
    body = bulk_body("a-1", [("x", 3, {"id": "x"}), ("y", 1, b'{"id":"y"}')])
    lines = body.split(b"\n")
    assert lines[-1] == b""  # the bulk API wants a final newline
    assert [orjson.loads(line) for line in lines[:-1]] == [
        {"index": {"_index": "a-1", "_id": "x", "version": 3, "version_type": "external_gte"}},
        {"id": "x"},
        {"index": {"_index": "a-1", "_id": "y", "version": 1, "version_type": "external_gte"}},
        {"id": "y"},
    ]
    assert lines[3] == b'{"id":"y"}'


def items(*statuses: int) -> dict[str, object]:
    return {
        "errors": any(status >= 300 for status in statuses),
        "items": [
            {"index": {"status": status, "error": {"type": f"e{status}"}}} for status in statuses
        ],
    }


BATCH = [("a", 1, b"{}"), ("b", 1, b"{}"), ("c", 1, b"{}"), ("d", 1, b"{}")]


def test_stored_older_refused_and_transient_items_are_told_apart() -> None:
    result = WriteResult()
    retry = sort_outcomes(items(201, 409, 400, 429), BATCH, result)
    assert retry == [BATCH[3]]
    assert (result.stored, result.version_conflicts) == (1, 1)
    assert result.rejected == [("c", {"type": "e400"})]


def test_on_the_last_attempt_a_transient_item_is_refused_not_sent_again() -> None:
    result = WriteResult()
    assert sort_outcomes(items(201, 503, 200, 200), BATCH, result, give_up=True) == []
    assert result.rejected == [("b", {"type": "e503"})]
    assert result.stored == 3


def test_a_response_without_errors_counts_every_item_stored() -> None:
    result = WriteResult()
    assert sort_outcomes({"errors": False, "items": []}, BATCH, result) == []
    assert result.stored == 4
