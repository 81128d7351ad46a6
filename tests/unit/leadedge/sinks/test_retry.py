"""Transient sink failures are retried with backoff and reported in /health meanwhile."""

from __future__ import annotations

import logging

import pytest

from leadedge import health
from leadedge.sinks.retry import Backoff, retry

log = logging.getLogger(__name__)


class Flaky:
    """Fails `failures` times with `error`, then answers "stored"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.degraded_seen: list[dict[str, str]] = []

    async def __call__(self) -> str:
        self.calls += 1
        self.degraded_seen.append(health.degraded())
        if self.calls <= self.failures:
            raise self.error
        return "stored"


async def test_a_transient_failure_is_retried_and_the_part_is_degraded_until_it_passes() -> None:
    attempt = Flaky(2, ConnectionError("refused"))
    retries: list[int] = []
    result = await retry(
        attempt,
        is_transient=lambda exc: isinstance(exc, ConnectionError),
        what="bulk index",
        log=log,
        on_retry=lambda: retries.append(1),
        component="test-sink",
        backoff=Backoff(first_delay=0.001),
    )
    assert (result, attempt.calls, len(retries)) == ("stored", 3, 2)
    assert "test-sink" not in attempt.degraded_seen[0]
    assert "bulk index" in attempt.degraded_seen[1]["test-sink"]
    assert "refused" in attempt.degraded_seen[2]["test-sink"]
    assert "test-sink" not in health.degraded()


async def test_a_permanent_error_is_raised_at_once() -> None:
    attempt = Flaky(5, PermissionError("403"))
    with pytest.raises(PermissionError):
        await retry(
            attempt,
            is_transient=lambda exc: isinstance(exc, ConnectionError),
            what="put",
            log=log,
            component="test-sink",
            backoff=Backoff(first_delay=0.001),
        )
    assert attempt.calls == 1 and "test-sink" not in health.degraded()


class RecordingClock:
    """Stands in for `asyncio.sleep`: keeps each delay asked for, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_the_delays_double_up_to_the_cap_while_it_keeps_failing() -> None:
    clock = RecordingClock()
    attempt = Flaky(7, ConnectionError("refused"))
    await retry(
        attempt,
        is_transient=lambda exc: isinstance(exc, ConnectionError),
        what="put",
        log=log,
        backoff=Backoff(first_delay=0.5, max_delay=4.0, sleep=clock),
    )
    assert clock.delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert attempt.calls == 8


async def test_a_bounded_backoff_raises_the_last_transient_error_after_its_attempts() -> None:
    clock = RecordingClock()
    attempt = Flaky(10, ConnectionError("refused"))
    backoff = Backoff(first_delay=0.5, attempts=4, sleep=clock)
    with pytest.raises(ConnectionError):
        await retry(
            attempt,
            is_transient=lambda exc: isinstance(exc, ConnectionError),
            what="bulk",
            log=log,
            backoff=backoff,
        )
    assert attempt.calls == 4
    assert clock.delays == backoff.delays() == [0.5, 1.0, 2.0]
