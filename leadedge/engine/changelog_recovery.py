"""Table recovery a fetch at a time: changelog records written to the store in bulk.

Faust recovers a table by sending every changelog record down its per-record path (a
message, a channel, a queue, the recovery loop) and writing them to the store in
batches of `recovery_buffer_size`. That path costs far more than the write: a worker
taking over a partition without its local store (a new worker, a replaced machine)
read its changelog at a few hundred records a second on a busy machine, and its lag
took minutes to come back after a rebalance.

`ChangelogBatches` takes a recovering partition's fetched records before that path: it
writes all but the last with the store's own `apply_changelog_batch` (one RocksDB write
batch per fetch) and moves Faust's recovery offset past them. The last record still
takes Faust's path, as the recovery loop's cue to check, as it does after every record,
whether recovery is complete.

Each record is written once and in offset order: before a bulk write, the record left
to Faust's path the fetch before must have reached the recovery loop (its offset is the
recovery offset), and the loop's buffer is written first. When the loop does not get
there within a second, the fetch takes Faust's path whole.

Only tables whose store is Faust's RocksDB store and that have no changelog-event
callback take this path; the others, and a partition no longer recovering, keep
Faust's. It relies on these internals of faust-streaming 0.15 (checked by
`tests/unit/leadedge/engine/test_faust_contract.py`): `Recovery.active_tps`,
`standby_tps`, `tp_to_table`, `active_offsets`, `standby_offsets`, `in_recovery`, the
recovery loop skipping a record at or before the recovery offset, and the RocksDB
store's `apply_changelog_batch` reading only `event.message`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, AppT, EventT, Message

from leadedge import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _ChangelogEvent:
    """What the RocksDB store's `apply_changelog_batch` reads of an event."""

    message: Message


class ChangelogBatches:
    """Writes recovering changelog partitions' records to their stores, a fetch at a time."""

    # How long a fetch waits for the recovery loop to take the record handed to it before.
    catch_up_timeout_s: float = 1.0

    def __init__(self, app: AppT) -> None:
        self.app = app
        # Per partition: the offset of the last record left to Faust's path, and the
        # consumer generation it was left in (a rebalance seeks anew).
        self._handed: dict[TP, int] = {}
        self._generation = -1

    async def take(
        self, tp: TP, records: Sequence[Any], to_message: Callable[[TP, Any], Message]
    ) -> list[Any]:
        """Apply what can be applied in bulk; returns the records left for Faust's path.

        All of them when `tp` is not a partition recovering into a RocksDB store; else the
        last one (the recovery loop's cue to check whether it is done), or none when the
        fetch held only records already applied.
        """
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        table = recovery.tp_to_table.get(tp)
        if table is None or len(records) < 2 or not self._bulk_capable(table):
            return list(records)
        if tp in recovery.active_tps:
            if not recovery.in_recovery:
                # Recovered: a late fetch takes Faust's path, as before.
                return list(records)
            offsets = recovery.active_offsets
        elif tp in recovery.standby_tps:
            offsets = recovery.standby_offsets
        else:
            return list(records)
        if not await self._caught_up(tp, offsets):
            self._handed[tp] = records[-1].offset
            return list(records)
        seen = offsets.get(tp)
        fresh = [r for r in records if seen is None or r.offset > seen]
        if len(fresh) < 2:
            return fresh
        # What the loop buffered is older than this fetch: stored first.
        recovery.flush_buffers()
        bulk = fresh[:-1]
        table.apply_changelog_batch(
            [cast("EventT[Any]", _ChangelogEvent(to_message(tp, record))) for record in bulk]
        )
        offsets[tp] = bulk[-1].offset
        self._handed[tp] = fresh[-1].offset
        metrics.changelog_records_bulk_applied_total.inc(len(bulk))
        return fresh[-1:]

    async def _caught_up(self, tp: TP, offsets: Any) -> bool:
        """True once the recovery loop has taken the record handed to it last for `tp`."""
        generation = self.app.consumer_generation_id
        if generation != self._generation:
            self._generation = generation
            self._handed.clear()
        handed = self._handed.get(tp)
        deadline = time.monotonic() + self.catch_up_timeout_s
        while handed is not None and _behind(offsets.get(tp), handed):
            if time.monotonic() >= deadline:
                log.debug("recovery loop behind on %s: this fetch takes Faust's path", tp)
                return False
            await asyncio.sleep(0.001)
        return True

    @staticmethod
    def _bulk_capable(table: Any) -> bool:
        # The memory store decodes each event's key and value itself, and a callback
        # wants every event: both keep Faust's path.
        return isinstance(table.data, RocksDBStore) and not table._on_changelog_event


def _behind(seen: int | None, handed: int) -> bool:
    return seen is None or seen < handed
