"""Writers to the outside world, each one shape: `start()`, `write(batch)`, `stop()`.

`Sink` is that shape. A sink takes explicit arguments (built from the settings in
`leadedge.engine.wiring`), retries transient failures by its `Backoff`
(`leadedge.sinks.retry`) and names itself (`component`) in `/health` while it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)


class Sink(Protocol[ItemT_contra, ResultT_co]):
    """A writer: ready after `start()`, `write` returns once the batch is stored."""

    @property
    def component(self) -> str | None:
        """The part `/health` reports degraded while this sink retries."""
        ...

    async def start(self) -> None:
        """Connect, and create what the writes need (idempotent)."""
        ...

    async def write(self, batch: Sequence[ItemT_contra]) -> ResultT_co:
        """Store the batch; blocks (retrying) while the outside world is away."""
        ...

    async def stop(self) -> None:
        """Release the connection."""
        ...
