"""Local stores survive a restart only after a clean stop."""

from __future__ import annotations

from pathlib import Path

from leadedge.engine.table_stores import (
    CLEAN_STOP_MARKER,
    discard_after_unclean_stop,
    mark_clean_stop,
)


def make_store(tabledir: Path, name: str) -> Path:
    store = tabledir / name
    store.mkdir(parents=True)
    (store / "CURRENT").write_text("MANIFEST-000001\n")
    return store


def test_stores_left_by_a_crash_are_removed(tmp_path: Path) -> None:
    stores = [make_store(tmp_path, "merged_requests-0.db"), make_store(tmp_path, "x-1.db")]
    assert discard_after_unclean_stop(tmp_path) == sorted(stores)
    assert not any(store.exists() for store in stores)


def test_stores_after_a_clean_stop_are_kept_and_the_marker_is_consumed(tmp_path: Path) -> None:
    store = make_store(tmp_path, "merged_requests-0.db")
    mark_clean_stop(tmp_path)
    assert discard_after_unclean_stop(tmp_path) == []
    assert store.exists()
    assert not (tmp_path / CLEAN_STOP_MARKER).exists()
    # A crash after this start leaves no marker: the next start rebuilds.
    assert discard_after_unclean_stop(tmp_path) == [store]


def test_a_first_start_with_no_tables_removes_nothing(tmp_path: Path) -> None:
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept")
    assert discard_after_unclean_stop(tmp_path / "absent") == []
    assert discard_after_unclean_stop(tmp_path) == []
    assert unrelated.exists()


def test_the_engines_stores_are_kept_after_a_crash_and_the_others_rebuilt(tmp_path: Path) -> None:
    engine = make_store(tmp_path, "merged_requests-3.db")
    other_partition = make_store(tmp_path, "merged_requests-12.db")
    faust_written = make_store(tmp_path, "request_stats-3.db")
    removed = discard_after_unclean_stop(tmp_path, keep=frozenset({"merged_requests"}))
    assert removed == [faust_written]
    assert engine.exists() and other_partition.exists() and not faust_written.exists()


def test_a_table_name_with_dashes_is_read_from_its_store_directory(tmp_path: Path) -> None:
    store = make_store(tmp_path, "my-app-table-7.db")
    assert discard_after_unclean_stop(tmp_path, keep=frozenset({"my-app-table"})) == []
    assert store.exists()
