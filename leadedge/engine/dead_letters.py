"""Dead letters: the original key and value bytes, with why and where from in headers."""

from __future__ import annotations

from leadedge import metrics
from leadedge.engine.kafka_out import OutRecord
from leadedge.rules.merge import format_time
from leadedge.rules.models import Rejection, SourceRecord

HEADER_PREFIX = "leadedge.error."
# A dead letter must fit in one produce request (1 MiB by default) with its key and
# headers, or the record it stands for would be lost; the value is cut to this many bytes,
# the key (any client may send a large one) to MAX_KEY_BYTES.
MAX_VALUE_BYTES = 900 * 1024
MAX_KEY_BYTES = 16 * 1024
MAX_DETAIL_CHARACTERS = 2000


def dead_letter_headers(
    record: SourceRecord, rejection: Rejection, now_ms: int
) -> list[tuple[str, bytes]]:
    """Headers in the spirit of Kafka Connect's DLQ context headers."""
    fields = {
        "reason": rejection.reason,
        "detail": rejection.detail[:MAX_DETAIL_CHARACTERS],
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        "time": format_time(now_ms),
    }
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]


def dead_letter(
    record: SourceRecord, rejection: Rejection, now_ms: int
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The dead letter's key, value and headers: the original bytes, cut to fit if they must.

    A cut value says so in `leadedge.error.truncated`, a cut key in
    `leadedge.error.key_truncated` (each the original size in bytes); the whole record is
    still in the source topic at the offset the headers name.
    """
    key, value = record.key, record.value or b""
    headers = dead_letter_headers(record, rejection, now_ms)
    if len(value) > MAX_VALUE_BYTES:
        headers.append((HEADER_PREFIX + "truncated", str(len(value)).encode()))
        value = value[:MAX_VALUE_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append((HEADER_PREFIX + "key_truncated", str(len(key)).encode()))
        key = key[:MAX_KEY_BYTES]
    return key, value, headers


def dead_letter_record(
    topic: str, record: SourceRecord, rejection: Rejection, now_ms: int
) -> OutRecord:
    """The record the flush produces for a rejected one, counted by its reason."""
    metrics.dead_letters_total.labels(rejection.reason).inc()
    key, value, headers = dead_letter(record, rejection, now_ms)
    return OutRecord(topic, None, key, value, headers)
