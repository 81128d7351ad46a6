"""Local RocksDB table stores are kept across a restart only after a clean stop.

Faust writes a table update to the local RocksDB store at once and to the changelog
topic a little later; the store remembers the last changelog offset Kafka acknowledged,
and on start it reads the changelog from there. After a `kill -9` the store can hold
updates that never reached the changelog, and reading the changelog's tail then puts
some keys back to an older value while others keep the newer one. Each key is still a
value the worker wrote, but keys written together for one record no longer agree: a
request's stats shape could say an event was counted while its window's partial had
gone back to before it, so the replayed event was skipped and the window came out short.

The changelog itself is always a prefix of the writes (one producer, one partition, in
order). So after an unclean stop the local stores are removed and rebuilt from the
changelogs, as Kafka Streams does under exactly-once. A clean stop leaves a marker file
beside the stores; starting removes it, so a crash leaves none.

The batch engine's tables are the exception (`keep`): the engine writes their stores
only after Kafka acknowledged the changelog records, values first and the changelog
offset reached last (`leadedge.engine.write_back`). After a `kill -9` such a store holds
nothing its changelog lacks, and every value written after its recorded offset is in
the changelog's tail, which recovery reads again: the store ends up exactly as a full
rebuild would leave it, without reading the whole changelog.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CLEAN_STOP_MARKER = "leadedge-clean-stop"
STORE_SUFFIX = ".db"


def table_of_store(path: Path) -> str:
    """The table a store directory belongs to: Faust names them `{table}-{partition}.db`."""
    return path.name.removesuffix(STORE_SUFFIX).rpartition("-")[0]


def discard_after_unclean_stop(tabledir: Path, keep: frozenset[str] = frozenset()) -> list[Path]:
    """Remove the local stores unless the last stop was clean; return what was removed.

    The stores of the tables named in `keep` stay either way (see above). The marker is
    consumed either way: from here on only a new clean stop makes the stores
    trustworthy again.
    """
    marker = tabledir / CLEAN_STOP_MARKER
    if marker.exists():
        marker.unlink()
        return []
    stores = sorted(
        path
        for path in tabledir.glob(f"*{STORE_SUFFIX}")
        if path.is_dir() and table_of_store(path) not in keep
    )
    for path in stores:
        shutil.rmtree(path)
    return stores


def mark_clean_stop(tabledir: Path) -> None:
    """Record that every store in `tabledir` matches its changelog."""
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / CLEAN_STOP_MARKER).touch()
