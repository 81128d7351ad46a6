"""`requests` → gzip NDJSON objects in S3, in a process of its own beside the worker.

The archive (`leadedge.engine.raw_archive`) reads with its own consumer group and needs
nothing of the merge, so the worker runs it as a child process
(`leadedge.engine.archive_process`): started with the worker, started again if it dies,
asked to store what it holds when the worker stops. Its metrics and failures show in the
worker's `/metrics` and `/health`.
"""

from __future__ import annotations

from mode import Service

from leadedge.engine.app import app, settings
from leadedge.engine.archive_process import ArchiveProcess

# Of the worker's shutdown bound: the rest is for the merge's last flush and commit.
STOP_SHARE = 0.8


@app.service
class RawArchiveService(Service):
    """Keeps the archive's process running while the worker runs."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.process = ArchiveProcess()

    @Service.task
    async def _supervise(self) -> None:
        await self.process.supervise()

    async def on_stop(self) -> None:
        """The child stores its open objects and commits them before the worker exits."""
        await self.process.stop(settings.shutdown_timeout_s * STOP_SHARE)
