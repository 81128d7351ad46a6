"""The event ids a request remembers, so that a repeated event_id changes nothing (rule 6).

A state keeps its last `limit` event ids, oldest first, and is stored as that JSON list.
Each event makes a new state and leaves the one before it as it was (the engine may still
write the older one), so the ids cannot be appended in place; copied whole, they made a
request's 1,000th event cost several times its first. Here a new version shares the
older ids with the one before it and copies only its newest few (at most `SEGMENT`); every
`SEGMENT` events they are joined into one tuple. What an event costs stays the same
whatever the request's length: one lookup in a set, a copy of at most `SEGMENT` ids, and
every `SEGMENT` events one copy of `limit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

SEGMENT = 32
# Fewer ids are searched: a set would cost more than it saves.
LOOKUP_FROM = 16


class EventIds:
    """An immutable sequence of event ids, oldest first, with a fast membership test.

    The set behind `in` is handed on to the next version (`remembering`), the way the
    state itself is: a version used again after a newer one was made (a state the engine
    still flushes) searches its ids instead, and is still right. A version made from a
    stored list builds no set: its next version does, if the request gets another event.
    """

    __slots__ = ("_kept", "_lookup", "_newer", "_older", "_start")

    def __init__(
        self, older: Sequence[str] = (), start: int = 0, newer: tuple[str, ...] = ()
    ) -> None:
        self._older = older
        self._start = start
        self._newer = newer
        self._lookup: set[str] | None = None
        self._kept = False

    @classmethod
    def of(cls, ids: Iterable[str]) -> EventIds:
        """From a stored list (or any iterable), oldest first; the list is not copied."""
        if isinstance(ids, EventIds):
            return ids
        return cls(ids if isinstance(ids, (list, tuple)) else tuple(ids))

    def __len__(self) -> int:
        return len(self._older) - self._start + len(self._newer)

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_list())

    def as_list(self) -> list[str]:
        """The ids as the plain list a stored state holds."""
        return [*self._older[self._start :], *self._newer]

    def __contains__(self, event_id: object) -> bool:
        lookup = self._lookup
        if lookup is not None:
            return event_id in lookup
        if event_id in self._newer:
            return True
        if self._start == 0:
            return event_id in self._older
        return event_id in self._older[self._start :]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventIds):
            return self.as_list() == other.as_list()
        if isinstance(other, list):
            return self.as_list() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventIds({self.as_list()!r})"

    def remembering(self, event_id: str, limit: int) -> EventIds:
        """A new version with `event_id` added and the oldest beyond `limit` dropped.

        `self` keeps its ids; its set, if it had one, moves to the new version.
        """
        older, start = self._older, self._start
        newer = (*self._newer, event_id)
        dropped: Sequence[str] = ()
        excess = len(older) - start + len(newer) - limit
        if excess > 0:
            # The oldest go first: from `older`, then (a limit below SEGMENT) from `newer`.
            from_older = min(excess, len(older) - start)
            dropped = older[start : start + from_older]
            start += from_older
            if excess > from_older:
                dropped = (*dropped, *newer[: excess - from_older])
                newer = newer[excess - from_older :]
        if len(newer) >= SEGMENT:
            older, start, newer = (*older[start:], *newer), 0, ()
        remembered = EventIds(older, start, newer)
        remembered._kept = True
        lookup = self._lookup
        if lookup is not None:
            self._lookup = None
            if event_id not in lookup:
                lookup.difference_update(dropped)
                lookup.add(event_id)
                # A stored list that held an id twice would leave the set short: searched.
                if len(lookup) == len(remembered):
                    remembered._lookup = lookup
        elif self._kept and len(remembered) >= LOOKUP_FROM:
            built = set(remembered.as_list())
            if len(built) == len(remembered):
                remembered._lookup = built
        return remembered


def json_default(value: Any) -> Any:
    """Orjson's `default`: event ids are written as the plain list they stand for."""
    if isinstance(value, EventIds):
        return value.as_list()
    msg = f"Type is not JSON serializable: {type(value).__name__}"
    raise TypeError(msg)
