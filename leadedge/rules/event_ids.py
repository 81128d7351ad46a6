"""The event ids a request remembers, so that a repeated event_id changes nothing (rule 6).

A state keeps its last `limit` event ids, oldest first. They are held, and stored, as one
string: each id escaped (`%` and `|` percent-encoded) and followed by `|`, after a leading
`|`, so `["a", "b|c"]` is `"|a|b%7Cc|"`. An id is remembered when `|{escaped id}|` occurs
in it: no id holds a `|` once escaped, so an occurrence is always one whole id.

Why one string: a long request's state is written at nearly every one of its events (one
write per flush that changes it), and 1,000 ids kept as a list were 1,000 strings to
encode at each write and to build again at each read; a request's 1,000th event cost
several times its first. One string is copied, searched and encoded in C at a cost that
grows by bytes, not by objects: each event copies it once or twice and searches it once.

States stored before this held a JSON list of the ids; `EventIds.of` reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

SEPARATOR = "|"
EMPTY = SEPARATOR


def escape(event_id: str) -> str:
    """An id as it is written between separators: never holding one."""
    return event_id.replace("%", "%25").replace(SEPARATOR, "%7C")


def unescape(escaped: str) -> str:
    """The id `escape` made `escaped` of."""
    if "%" not in escaped:
        return escaped
    return escaped.replace("%7C", SEPARATOR).replace("%25", "%")


def pack(ids: Iterable[str]) -> str:
    """Ids, oldest first, as the string a state stores."""
    return SEPARATOR + "".join(f"{escape(event_id)}{SEPARATOR}" for event_id in ids)


class EventIds:
    """An immutable sequence of event ids, oldest first, held as their packed string."""

    __slots__ = ("_count", "packed")

    def __init__(self, packed: str = EMPTY, count: int | None = None) -> None:
        self.packed = packed
        self._count = count

    @classmethod
    def of(cls, ids: Any) -> EventIds:
        """From a stored value: the packed string, or the JSON list states used to hold."""
        if isinstance(ids, EventIds):
            return ids
        if isinstance(ids, str):
            return cls(ids)
        if not ids:
            return cls(EMPTY, 0)
        listed = list(ids)
        return cls(pack(listed), len(listed))

    def __len__(self) -> int:
        if self._count is None:
            self._count = self.packed.count(SEPARATOR) - 1
        return self._count

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_list())

    def as_list(self) -> list[str]:
        """The ids as a plain list, oldest first."""
        if len(self) == 0:
            return []
        return [unescape(part) for part in self.packed[1:-1].split(SEPARATOR)]

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        return f"{SEPARATOR}{escape(event_id)}{SEPARATOR}" in self.packed

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventIds):
            return self.packed == other.packed
        if isinstance(other, str):
            return self.packed == other
        if isinstance(other, list):
            return self.as_list() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventIds({self.as_list()!r})"

    def remembering(self, event_id: str, limit: int) -> EventIds:
        """A new version with `event_id` added and the oldest beyond `limit` dropped."""
        packed = f"{self.packed}{escape(event_id)}{SEPARATOR}"
        count = len(self) + 1
        while count > limit:
            # The oldest id ends at the second separator.
            packed = packed[packed.index(SEPARATOR, 1) :]
            count -= 1
        return EventIds(packed, count)


def json_default(value: Any) -> Any:
    """Orjson's `default`: event ids are written as their packed string."""
    if isinstance(value, EventIds):
        return value.packed
    msg = f"Type is not JSON serializable: {type(value).__name__}"
    raise TypeError(msg)
