"""Records the broker deleted before this worker read them: counted, logged, reported.

The consumer moves on to a partition's log start by itself (auto.offset.reset) when the
records it was to read next were deleted (retention by record timestamp, or
delete-records), and says nothing. Here each partition's next expected offset is
compared with its log start: when a fetch jumps ahead, and every `check_every_s` for
partitions that get no new records. Gaps below the log start (transaction markers) are
not counted; a partition the group never committed an offset for has nothing expected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from leadedge import health

log = logging.getLogger(__name__)

LogStarts = Callable[..., Awaitable[Mapping[Any, int]]]


class DeletedRecordsWatch:
    """Per partition (Faust's TP): where reading should go on, and what was counted."""

    def __init__(
        self,
        check_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        reader: str = "",
    ):
        # Who missed the records when it is not the merge: the archive reads on its own.
        self.reader = reader
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked_at = clock()
        # Where reading should have gone on, for partitions whose fetch jumped ahead.
        self._jumps: dict[Any, int] = {}
        # Offsets below this were already counted as deleted, per partition.
        self._counted_to: dict[Any, int] = {}

    def fetched(self, tp: Any, expected: int | None, first: int) -> None:
        """A fetch of `tp` starts at `first` where `expected` was next."""
        if expected is not None and first > expected:
            self._jumps[tp] = min(expected, self._jumps.get(tp, expected))

    def due(self) -> bool:
        """A fetch jumped ahead, or the interval passed."""
        return bool(self._jumps) or self._clock() - self._checked_at >= self.check_every_s

    async def check(self, expected: Mapping[Any, int], log_starts: LogStarts) -> None:
        """Count what lies between each partition's expected offset and its log start.

        `expected` is each partition's next offset now; a partition that jumped ahead
        since the last check is measured from where it should have gone on.
        """
        jumps, self._jumps = self._jumps, {}
        self._checked_at = self._clock()
        expected = {**expected, **jumps}
        if not expected:
            return
        try:
            starts = await log_starts(*expected)
        except Exception:
            log.warning("could not read the log start offsets", exc_info=True)
            return
        for tp, next_offset in expected.items():
            start = starts.get(tp)
            if start is None:
                continue
            counted_from = max(next_offset, self._counted_to.get(tp, next_offset))
            deleted = start - counted_from
            if deleted <= 0:
                continue
            self._counted_to[tp] = start
            topic = f"{tp.topic} ({self.reader})" if self.reader else tp.topic
            log.error(
                "%s[%d]: %d records (offsets %d to %d) were deleted by the broker before "
                "they were read: the topic's retention is shorter than this worker's lag",
                topic,
                tp.partition,
                deleted,
                counted_from,
                start - 1,
            )
            health.report_skipped(topic, tp.partition, deleted)
