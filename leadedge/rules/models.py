"""The shapes that flow through leadedge: an accepted event, a rejected one, a record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A merged request as kept in the table: the merged fields plus bookkeeping whose names
# start with "_" (input events may not use such names, so they never collide).
State = dict[str, Any]

DEFAULT_PROJECT = "default"
# Between a project and an id in a request's key. Neither may contain it: ids refuse
# control characters and project names are `PROJECT_NAME` (leadedge.rules.validate).
KEY_SEPARATOR = "\x1f"


def request_key(project: str, request_id: str) -> str:
    r"""What identifies a request (DESIGN: a request is (project, id)).

    The id alone in project `default`, so a deployment without projects keys its tables,
    topic records and documents by id; `{project}\x1f{id}` in any other project.
    """
    if project == DEFAULT_PROJECT:
        return request_id
    return project + KEY_SEPARATOR + request_id


# Not frozen: one is made per record, and a frozen dataclass's __init__ costs three times
# a plain one's (`object.__setattr__` per field). Nothing changes them once made.
@dataclass(slots=True)
class SourceRecord:
    """Where a raw Kafka record came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    # Why Kafka's client could not decode the record at this offset (no key, no value):
    # see `leadedge.engine.undecodable`.
    undecodable: str | None = None

    @classmethod
    def of(cls, message: Any) -> SourceRecord:
        """From a Faust message (its timestamp is in seconds)."""
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000),
            key=message.key,
            value=message.value,
        )


@dataclass(slots=True)
class Event:
    """A valid input event: the request id, its bookkeeping, and the fields to merge."""

    id: str
    project: str
    ts_ms: int
    event_id: str | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The key of the request this event belongs to: (project, id)."""
        return request_key(self.project, self.id)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: a stable reason code and a sentence for people."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
