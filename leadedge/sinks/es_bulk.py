"""Elasticsearch's bulk API as leadedge speaks it: versioned documents in, outcomes out.

No I/O here: the writer (`leadedge.sinks.elasticsearch`) sends the body and retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

# Worth trying again: the item or the whole call may pass later.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# One bulk call carries at most this many bytes of documents (Elasticsearch refuses a
# request over `http.max_content_length`, 100 MB by default, with 413, and advises bulks
# of a few MB): a flush of many large requests is written in several calls.
MAX_BULK_BYTES = 8 * 1024 * 1024

# (id, version, document): the document as a dict, or already encoded as JSON bytes. The
# version only grows (a request's event count, a window's event count), so a replayed or
# delayed older write is refused by Elasticsearch (409) instead of overwriting a newer one.
Document = tuple[str, int, dict[str, Any] | bytes]


def document_from_message(key: bytes, value: bytes, version_field: str) -> Document:
    """The document of a compacted topic's record: the key is its id, a field its version.

    Raises ValueError (or KeyError, UnicodeDecodeError) when the record holds no such
    document; callers report it with the key.
    """
    document = orjson.loads(value)
    if not isinstance(document, dict):
        msg = "a document is a JSON object"
        raise ValueError(msg)
    return key.decode("utf-8"), int(document[version_field]), document


def encoded(document: Document) -> Document:
    """The document with its body as JSON bytes (encoded once, for its size and the body)."""
    body = document[2]
    return document if isinstance(body, bytes) else (document[0], document[1], orjson.dumps(body))


def bulk_chunks(batch: Iterable[Document], max_bytes: int = MAX_BULK_BYTES) -> list[list[Document]]:
    """The batch in order, in runs of documents of at most `max_bytes` (at least one each)."""
    chunks: list[list[Document]] = []
    current: list[Document] = []
    size = 0
    for document in batch:
        document = encoded(document)
        length = len(cast(bytes, document[2])) + len(document[0]) + 100
        if current and size + length > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(document)
        size += length
    if current:
        chunks.append(current)
    return chunks


def bulk_body(index: str, batch: Iterable[Document]) -> bytes:
    """NDJSON: a versioned index action and its document per item.

    Encoded with orjson (the client would encode each line with the standard library's
    json); a document already encoded is reused as is.
    """
    lines: list[bytes] = []
    for document_id, version, document in batch:
        action = {"_index": index, "_id": document_id, "version": version}
        lines.append(orjson.dumps({"index": {**action, "version_type": "external_gte"}}))
        lines.append(document if isinstance(document, bytes) else orjson.dumps(document))
    lines.append(b"")
    return b"\n".join(lines)


@dataclass
class WriteResult:
    """What became of a batch: stored, older than what was there, or refused."""

    stored: int = 0
    version_conflicts: int = 0
    # (id, Elasticsearch's error): a permanent refusal, or a transient one given up on.
    rejected: list[tuple[str, Any]] = field(default_factory=list)


def sort_outcomes(
    response: Mapping[str, Any],
    batch: Sequence[Document],
    result: WriteResult,
    *,
    give_up: bool = False,
) -> list[Document]:
    """Count each item's outcome into `result`; returns the items to send again.

    A 409 is an older version: skipped, counted. A transient status is sent again, unless
    `give_up` (the last attempt), when it is refused like a permanent one.
    """
    if not response.get("errors"):
        result.stored += len(batch)
        return []
    retry: list[Document] = []
    for item, sent in zip(response["items"], batch, strict=True):
        outcome = item["index"]
        status = outcome.get("status", 500)
        if status < 300:
            result.stored += 1
        elif status == 409:
            result.version_conflicts += 1
        elif status in TRANSIENT_STATUS and not give_up:
            retry.append(sent)
        else:
            result.rejected.append((sent[0], outcome.get("error")))
    return retry
