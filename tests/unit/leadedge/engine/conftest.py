"""Fixtures the engine's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.stores.rocksdb import Store as RocksDBStore

import leadedge.agents.merge  # noqa: F401 (declares the tables on the app)
from leadedge.engine.app import app
from leadedge.tables.merged_requests import merged_requests


@pytest.fixture()
def rocksdb_store(tmp_path: Path) -> Iterator[RocksDBStore]:
    """The merged-requests table over a real RocksDB store in a temporary directory."""

    class TemporaryStore(RocksDBStore):
        @property
        def path(self) -> Path:
            return tmp_path

    built = TemporaryStore("rocksdb://", app, merged_requests)
    previous = merged_requests._data
    merged_requests._data = built
    yield built
    merged_requests._data = previous
    for db in built._dbs.values():
        db.close()
