"""What the stats steps store and send for one record: pure plans over a key lookup.

Each step keeps everything it needs in one table, written while handling records of
one partition, so all of a step's writes for a partition go to one changelog partition
in order, and a crash keeps a prefix of them. Step 1 counts the events the merge
applied (`count_applied`); its partials are stored before the merged states, so a
record replayed after a crash is either a redelivery to the merge or finds its partial
without the offset (counted now) or holding it already (counted once). A kept partial
whose send was lost is sent again (`kept_partials`).

Step 1 (per `requests` partition): `w␟{window}␟{p}` the partial count, `c␟{p}` the
partition's clock (stream time and the partials it keeps).
Step 2 (per partials partition): `{window id}` the total, `␟c␟{q}` the clock and
`␟h␟{q}␟{hour}` the windows that start in that hour, so retention deletes by the hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leadedge.rules.models import State
from leadedge.rules.stats import (
    MAX_OPEN_WINDOWS,
    MAX_WINDOW_COUNTERS,
    OTHER_SOURCES,
    Counted,
    Window,
    count_into,
    is_late,
    merge_partial,
    new_partial,
    observed_ms,
    window_document,
)

SEP = "\x1f"
HOUR_MS = 3_600_000
# A closed partial stays this long (stream time) so a record replayed after a crash can
# still send it again; see `kept_partials`.
KEEP_CLOSED_MS = 600_000

Lookup = Callable[[str], Any]


PARTIAL_PREFIX = f"w{SEP}"
CLOCK_PREFIX = f"c{SEP}"


def partial_key(window_id: str, partition: int) -> str:
    """Step 1: one partition's partial count of a window."""
    return f"w{SEP}{window_id}{SEP}{partition}"


def clock_key(partition: int) -> str:
    """Step 1: a `requests` partition's stream time and kept partials."""
    return f"c{SEP}{partition}"


def totals_clock_key(partition: int) -> str:
    """Step 2: a partials partition's clock and the hours it holds windows for."""
    return f"{SEP}c{SEP}{partition}"


def hour_key(partition: int, hour_ms: int) -> str:
    """Step 2: the ids of the windows that start in one hour."""
    return f"{SEP}h{SEP}{partition}{SEP}{hour_ms}"


@dataclass
class Plan:
    """Table writes in order (None deletes), then the (key, value) records to send."""

    writes: list[tuple[str, Any]] = field(default_factory=list)
    sends: list[tuple[str, State]] = field(default_factory=list)
    # counted, late (its window had closed), repeated (its partial holds it already)
    outcome: str = "counted"


def flush_records(changed: dict[str, Any], previous: Lookup) -> list[tuple[str, Any]]:
    """Step 1's changes of one partition in one flush, as changelog records in order.

    The engine writes each changed key once per flush, and a crash keeps any prefix of
    a flush's records. Planned event by event, every prefix was sound;
    across a whole flush the partition's clock has moved for every record in it, so:

    1. an *opening* clock: the stream time before the flush, listing every partial kept
       before or after it (a partial is listed before it is stored, so a restart sends
       every stored one again), and no stream time that would make a replayed record
       late that was on time when first counted;
    2. the partials;
    3. the final clock, then the deletions of the partials it no longer lists: a prefix
       that ends between the two leaves a partial stored but unlisted (it is not sent
       again, and stays until the partition's store is rebuilt), never a replayed
       record counted into a partial started again from zero.

    As before, a partial is deleted `KEEP_CLOSED_MS` of stream time after its window
    closed: a flush over which stream time jumps further than that (re-producing old
    records fast) can lose the last send of a window that closed within it in a crash.
    """
    clocks = [key for key in changed if key.startswith(CLOCK_PREFIX)]
    opening = []
    for key in clocks:
        final = changed[key]
        before = previous(key)
        listed = list(before["open"]) if before else []
        known = {entry[1] for entry in listed}
        listed.extend(entry for entry in final["open"] if entry[1] not in known)
        opening.append(
            (key, {"stream_ms": before["stream_ms"] if before else None, "open": listed})
        )
    partials = [
        (k, v) for k, v in changed.items() if v is not None and k.startswith(PARTIAL_PREFIX)
    ]
    deletions = [(k, v) for k, v in changed.items() if v is None]
    return [*opening, *partials, *((key, changed[key]) for key in clocks), *deletions]


class UnsentPartials:
    """Step 1's sends held back: the newest partial of each window of each partition.

    A partial is a full snapshot of its partition's count of a window, so only the
    newest matters: sending the held ones once per interval carries the same counts as
    one send per event, at a fraction of the records.
    """

    def __init__(self) -> None:
        self._newest: dict[tuple[str, int], State] = {}

    def add(self, partition: int, sends: list[tuple[str, State]]) -> None:
        """Keep `sends` (window id, partial) of one `requests` partition, replacing older."""
        for window_id, partial in sends:
            self._newest[(window_id, partition)] = partial

    def update(self, newer: UnsentPartials) -> None:
        """Keep what `newer` holds too, its partials replacing older ones of their window."""
        self._newest.update(newer._newest)

    def take(self) -> list[tuple[str, State]]:
        """The (window id, partial) pairs held, in the order first held; none after."""
        taken = [(window_id, partial) for (window_id, _), partial in self._newest.items()]
        self._newest.clear()
        return taken

    def drop(self, partitions: set[int]) -> None:
        """Forget what revoked partitions held: their next owner sends its kept partials."""
        for window_id, partition in list(self._newest):
            if partition in partitions:
                del self._newest[(window_id, partition)]

    def __len__(self) -> int:
        return len(self._newest)


class PartitionCount:
    """Step 1 over a run of one partition's applied events, in offset order.

    The same as planning each event on its own and applying the plans in turn, but each
    partial touched is copied once and the clock written once per run: the engine counts
    a fetched batch at a time. A partial's `src` (the last offset it counted) makes a
    replayed event count once.
    """

    def __init__(
        self,
        lookup: Lookup,
        partition: int,
        *,
        lateness_ms: int,
        max_counters: int = MAX_WINDOW_COUNTERS,
    ) -> None:
        self.lookup = lookup
        self.partition = partition
        self.lateness_ms = lateness_ms
        self.max_counters = max_counters
        self.clock = lookup(clock_key(partition)) or {"stream_ms": None, "open": []}
        self.stream_ms: int | None = self.clock["stream_ms"]
        self.listed = {key for _, key in self.clock["open"]}
        self.newly_kept: list[list[Any]] = []
        # Partial key → the partial being counted (this run's own copy), and its window id.
        self.counting: dict[str, State] = {}
        self.window_ids: dict[str, str] = {}
        # Window → its partial's key and the window it counts in (OTHER_SOURCES' when
        # too many are open): a window's id is formatted once a run.
        self.keys: dict[Window, tuple[str, Window]] = {}

    def add(self, counted: Counted, *, offset: int, event_ts_ms: int, record_ts_ms: int) -> str:
        """Count one applied event: "counted", "late" (its window had closed) or "repeated"."""
        observed = observed_ms(event_ts_ms, record_ts_ms)
        if self.stream_ms is None or observed > self.stream_ms:
            self.stream_ms = observed
        window = counted.window
        if is_late(window.start_ms, self.stream_ms, self.lateness_ms):
            return "late"
        known = self.keys.get(window)
        if known is None:
            key = partial_key(window.id, self.partition)
            if key not in self.listed and len(self.listed) >= MAX_OPEN_WINDOWS:
                # Too many windows open (expired ones leave the list at `finish`).
                window = Window(window.project, OTHER_SOURCES, window.start_ms)
                key = partial_key(window.id, self.partition)
            self.keys[counted.window] = (key, window)
        else:
            key, window = known
        partial = self.counting.get(key)
        if partial is None:
            stored = self.lookup(key)
            if stored is not None and offset <= stored["src"]:
                return "repeated"
            partial = (
                new_partial(window, self.partition)
                if stored is None
                else {**stored, "counters": dict(stored["counters"])}
            )
            self.counting[key] = partial
            self.window_ids[key] = window.id
            # The clock lists the partial before the partial is written (`flush_records`),
            # so a partial that is stored is always one `kept_partials` finds.
            if key not in self.listed:
                self.listed.add(key)
                self.newly_kept.append([window.start_ms, key])
        elif offset <= partial["src"]:
            return "repeated"
        count_into(partial, counted, offset, self.max_counters)
        return "counted"

    def finish(self) -> Plan:
        """The run's table writes (partials, clock, expired partials) and sends."""
        plan = Plan()
        plan.writes.extend(self.counting.items())
        plan.sends.extend((self.window_ids[key], partial) for key, partial in self.counting.items())
        kept = [*self.clock["open"], *self.newly_kept]
        keep_ms = self.lateness_ms + KEEP_CLOSED_MS
        expired = {key for begin, key in kept if is_late(begin, self.stream_ms, keep_ms)}
        if expired or self.newly_kept or self.stream_ms != self.clock["stream_ms"]:
            new_clock = {
                "stream_ms": self.stream_ms,
                "open": [entry for entry in kept if entry[1] not in expired],
            }
            plan.writes.append((clock_key(self.partition), new_clock))
        plan.writes.extend((key, None) for key in sorted(expired))
        return plan


def kept_partials(lookup: Lookup, partition: int) -> list[tuple[str, State]]:
    """Step 1: every partial the partition keeps, as (window id, partial), to send again.

    A send can be lost in a crash while the offsets of the records it counted were
    committed: nothing would send it again. Sending the kept partials again once a
    process takes the partition over covers that; a partial is a full snapshot, so a
    repeat changes nothing.
    """
    clock = lookup(clock_key(partition))
    found = []
    for _, key in clock["open"] if clock else []:
        partial = lookup(key)
        if partial is not None:
            window = Window(partial["project"], partial["source"], partial["start_ms"])
            found.append((window.id, partial))
    return found


def plan_total(
    lookup: Lookup, partial: State, *, partition: int, record_ts_ms: int, retention_ms: int
) -> Plan:
    """Step 2: fold one partial into its window's total and publish the total.

    The clock is the partials' record timestamps (when step 1 sent them), not event time:
    an event from the far future then cannot expire every window. The total is published
    even when unchanged, so a publication lost in a crash is made again on the replay.
    """
    plan = Plan()
    clock_name = totals_clock_key(partition)
    clock = lookup(clock_name) or {"stream_ms": None, "hours": []}
    previous = clock["stream_ms"]
    stream_ms = record_ts_ms if previous is None else max(previous, record_ts_ms)
    hours: list[int] = list(clock["hours"])
    start = partial["start_ms"]
    window_id = Window(partial["project"], partial["source"], start).id
    total = lookup(window_id)
    if total is None and is_late(start, stream_ms, retention_ms):
        plan.outcome = "late"  # past retention: its total is gone and must not restart at zero
    else:
        updated = merge_partial(total, partial)
        plan.writes.append((window_id, updated))
        if total is None:
            hour = start - start % HOUR_MS
            plan.writes.append(
                (hour_key(partition, hour), [*(lookup(hour_key(partition, hour)) or []), window_id])
            )
            if hour not in hours:
                hours = sorted([*hours, hour])
        plan.sends.append((window_id, window_document(updated)))
    for hour in [h for h in hours if h + HOUR_MS + retention_ms <= stream_ms]:
        for expired in lookup(hour_key(partition, hour)) or []:
            plan.writes.append((expired, None))
        plan.writes.append((hour_key(partition, hour), None))
        hours.remove(hour)
    new_clock = {"stream_ms": stream_ms, "hours": hours}
    if new_clock != clock:
        plan.writes.append((clock_name, new_clock))
    return plan
