"""Capped exponential backoff for transient sink failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from leadedge import health

T = TypeVar("T")


async def retry_forever(
    attempt: Callable[[], Awaitable[T]],
    *,
    is_transient: Callable[[BaseException], bool],
    what: str,
    log: logging.Logger,
    on_retry: Callable[[], None] = lambda: None,
    component: str | None = None,
    first_delay: float = 0.2,
    max_delay: float = 10.0,
) -> T:
    """Run `attempt` until it succeeds; a permanent error is raised at once.

    Blocking here is the backpressure: the caller's stream stops consuming, nothing is
    acknowledged, nothing is buffered without bound. While it retries, `component` is
    reported degraded in `/health` (see `leadedge.health`), until an attempt passes.
    """
    delay = first_delay
    failures = 0
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures += 1
            on_retry()
            if component is not None:
                health.report_failure(component, f"{what}: {exc!r}"[:500])
            log.warning("%s failed (attempt %d), retrying in %.1fs: %r", what, failures, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            if failures and component is not None:
                health.report_recovered(component)
            return result
