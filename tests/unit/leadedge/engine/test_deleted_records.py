from __future__ import annotations

from collections.abc import Mapping

import pytest
from faust.types import TP

from leadedge import health
from leadedge.engine.deleted_records import DeletedRecordsWatch

P0, P1 = TP("requests", 0), TP("requests", 1)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def log_starts(starts: dict[TP, int]):  # type: ignore[no-untyped-def]
    async def read(*partitions: TP) -> Mapping[TP, int]:
        return {tp: starts[tp] for tp in partitions}

    return read


@pytest.fixture(autouse=True)
def no_skips_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_skipped", {})


async def test_a_fetch_that_jumps_past_deleted_records_counts_them_once() -> None:
    watch = DeletedRecordsWatch(check_every_s=10, clock=Clock())
    watch.fetched(P0, expected=8, first=20)
    assert watch.due()
    await watch.check({P0: 25}, log_starts({P0: 20}))
    assert health.skipped() == {"requests[0]": 12}
    # Checked again (or the same jump seen again): nothing more.
    watch.fetched(P0, expected=8, first=20)
    await watch.check({P0: 25}, log_starts({P0: 20}))
    assert health.skipped() == {"requests[0]": 12}


async def test_a_partition_without_new_records_is_checked_on_the_interval() -> None:
    clock = Clock()
    watch = DeletedRecordsWatch(check_every_s=10, clock=clock)
    assert not watch.due()
    clock.now = 10
    assert watch.due()
    await watch.check({P0: 5, P1: 3}, log_starts({P0: 5, P1: 9}))
    assert health.skipped() == {"requests[1]": 6}
    # The record that arrives later, at the log start, adds nothing.
    watch.fetched(P1, expected=3, first=9)
    await watch.check({P1: 10}, log_starts({P1: 9}))
    assert health.skipped() == {"requests[1]": 6}


async def test_gaps_above_the_log_start_are_transaction_markers_not_deleted_records() -> None:
    watch = DeletedRecordsWatch(check_every_s=10, clock=Clock())
    watch.fetched(P0, expected=8, first=9)
    await watch.check({P0: 12}, log_starts({P0: 0}))
    assert health.skipped() == {}
