"""Capped exponential backoff for transient sink failures: one policy, one loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from leadedge import health

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """How a sink retries: delays doubling from `first_delay` up to `max_delay`.

    `attempts` None retries until it passes (the live sinks: blocking is their
    backpressure); a number gives up after that many attempts (`leadedge reindex`).
    `sleep` is the clock: tests inject one that records the delays instead of waiting.
    """

    first_delay: float = 0.2
    max_delay: float = 10.0
    attempts: int | None = None
    sleep: Sleep = field(default=asyncio.sleep, compare=False)

    def delays(self) -> list[float]:
        """The waits between bounded attempts (for the docs and the tests)."""
        if self.attempts is None:
            msg = "an unbounded backoff has no finite list of delays"
            raise ValueError(msg)
        waits, delay = [], self.first_delay
        for _ in range(self.attempts - 1):
            waits.append(delay)
            delay = min(delay * 2, self.max_delay)
        return waits


# The live sinks' policy: retry until it passes.
UNTIL_STORED = Backoff()


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    is_transient: Callable[[BaseException], bool],
    what: str,
    log: logging.Logger,
    backoff: Backoff = UNTIL_STORED,
    on_retry: Callable[[], None] = lambda: None,
    component: str | None = None,
) -> T:
    """Run `attempt` until it succeeds; a permanent error is raised at once.

    A transient one is retried after the backoff's next delay; the last one of a bounded
    backoff is raised. Blocking here is the backpressure: the caller's stream stops
    consuming, nothing is acknowledged, nothing is buffered without bound. While it
    retries, `component` is reported degraded in `/health` (see `leadedge.health`), until
    an attempt passes.
    """
    delay = backoff.first_delay
    failures = 0
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures += 1
            if backoff.attempts is not None and failures >= backoff.attempts:
                raise
            on_retry()
            if component is not None:
                health.report_failure(component, f"{what}: {exc!r}"[:500])
            log.warning("%s failed (attempt %d), retrying in %.1fs: %r", what, failures, delay, exc)
            await backoff.sleep(delay)
            delay = min(delay * 2, backoff.max_delay)
        else:
            if failures and component is not None:
                health.report_recovered(component)
            return result
