"""The raw archive in a process of its own, started, watched and stopped by the worker.

The archive shares nothing with the merge but the input topic (it has its own consumer
group, see `leadedge.engine.raw_archive`), so it runs beside the worker instead of on its
event loop, where it took about a fifth of the loop's time at 5,000 events/s; on a
machine with more than one core the two now run side by side.

The worker (`ArchiveProcess`) runs `python -m leadedge.engine.archive_process` with the
worker's environment (so the same settings) and talks to it over two pipes:

- the child's stdin: the line `stop` asks for a graceful stop (store every open object,
  commit, exit); the end of the file means the worker is gone (killed), and the child
  exits at once, as it would have inside a killed worker: what it had not stored is read
  again from its committed offsets by the next one;
- the child's stdout: one JSON object per line, its reports (`Reports`): metric counts
  and observations, and `/health` failures and recoveries, which the worker applies to
  its own metrics and health, so `/metrics` and `/health` read as before.

Its log lines go to the worker's stderr. If the child dies, the worker reports `archive`
degraded with the exit code and starts a new one, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from leadedge import health, metrics
from leadedge.exceptions import ConfigError

log = logging.getLogger(__name__)

STOP = b"stop\n"
# The metrics the archive's code counts (`RawArchive`, `S3Sink`, the retries): in the
# child they are forwarded to the worker, which keeps the ones `/metrics` shows.
FORWARDED_METRICS = (
    "agent_records_total",
    "sink_retries_total",
    "sink_batch_size",
    "sink_write_seconds",
)
# How often the child sends the counts it added up.
REPORT_EVERY_S = 0.5
# Backoff between starts of a child that died.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0


# The child's side.


class Reports:
    """What the child tells the worker: counts summed between sends, health at once."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.counts: dict[tuple[str, tuple[str, ...]], float] = {}
        self.observations: list[tuple[str, tuple[str, ...], float]] = []
        # A new child starts out as failing: its first good fetch clears what the worker
        # reported when the one before it died.
        self.failing = {"archive"}

    def inc(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        """Count `amount` more for a counter; sent with the next `send`."""
        key = (name, labels)
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """One observation of a histogram; sent with the next `send`."""
        self.observations.append((name, labels, value))

    def failure(self, component: str, reason: str) -> None:
        """`health.report_failure`, sent at once."""
        self.failing.add(component)
        self.send()
        self._write({"failure": [component, reason]})

    def recovered(self, component: str) -> bool:
        """`health.report_recovered`: sent only when the component had been failing."""
        if component not in self.failing:
            return False
        self.failing.discard(component)
        self.send()
        self._write({"recovered": component})
        return True

    def skipped(self, topic: str, partition: int, count: int) -> None:
        """`health.report_skipped`, sent at once."""
        self._write({"skipped": [topic, partition, count]})

    def send(self) -> None:
        """Send the counts and observations gathered since the last send."""
        if not self.counts and not self.observations:
            return
        counts = [[name, list(labels), amount] for (name, labels), amount in self.counts.items()]
        observed = [[name, list(labels), value] for name, labels, value in self.observations]
        self.counts.clear()
        self.observations.clear()
        self._write({"inc": counts, "observe": observed})

    def _write(self, message: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(message) + b"\n")
        self.out.flush()


class _ForwardedMetric:
    """Stands in for a metric in the child: `.labels(...).inc()` / `.observe()` are sent."""

    def __init__(self, name: str, reports: Reports, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.reports = reports
        self._labels = labels

    def labels(self, *values: str) -> _ForwardedMetric:
        return _ForwardedMetric(self.name, self.reports, tuple(str(v) for v in values))

    def inc(self, amount: float = 1) -> None:
        self.reports.inc(self.name, self._labels, amount)

    def observe(self, value: float) -> None:
        self.reports.observe(self.name, self._labels, value)


def forward_reports(reports: Reports) -> None:
    """In the child: the metrics and health calls of the archive's code go to `reports`."""
    for name in FORWARDED_METRICS:
        setattr(metrics, name, _ForwardedMetric(name, reports))
    health.report_failure = reports.failure  # type: ignore[assignment]
    health.report_recovered = reports.recovered  # type: ignore[assignment]
    health.report_skipped = reports.skipped  # type: ignore[assignment]


async def _child(reports: Reports) -> int:
    from leadedge.config import get_settings
    from leadedge.engine.raw_archive import RawArchive
    from leadedge.engine.wiring import Wiring

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # The worker owns this process: a SIGTERM or Ctrl-C sent to the whole process group
    # reaches the worker too, which then asks for the stop itself (a child that stopped on
    # its own would look like one that died, and be started again during the shutdown).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    await _watch_stdin(loop, stopping)
    wiring = Wiring(get_settings())
    archive = RawArchive(wiring.settings, wiring.archive_sink, wiring.kafka.client_options())

    async def send_reports() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            reports.send()

    sender = asyncio.ensure_future(send_reports())
    try:
        await archive.start()
        await archive.run(stopping)
        await archive.stop()
    finally:
        sender.cancel()
        reports.send()
    return 0


async def _watch_stdin(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch() -> None:
        while True:
            line = await reader.readline()
            if line == STOP:
                stopping.set()
            elif not line and not stopping.is_set():
                # The worker is gone without asking for a stop (killed): go with it.
                log.warning("archive: the worker is gone; exiting")
                os._exit(1)
            elif not line:
                return

    # Kept for the life of the child: the loop holds tasks only weakly.
    _background.add(asyncio.ensure_future(watch()))


_background: set[asyncio.Future[None]] = set()


def main() -> int:
    """`python -m leadedge.engine.archive_process`: run the archive until asked to stop."""
    logging.basicConfig(
        level=os.environ.get("LEADEDGE_ARCHIVE_LOG_LEVEL", "INFO"),
        format="[%(asctime)s] [archive %(process)d] [%(levelname)s] %(message)s",
        stream=sys.stderr,
    )
    reports = Reports(sys.stdout.buffer)
    forward_reports(reports)
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_child(reports))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


# The worker's side.


def _apply(message: dict[str, Any]) -> None:
    """Apply one report of the child to the worker's metrics and health."""
    for name, labels, amount in message.get("inc", ()):
        if name in FORWARDED_METRICS:
            getattr(metrics, name).labels(*labels).inc(amount)
    for name, labels, value in message.get("observe", ()):
        if name in FORWARDED_METRICS:
            getattr(metrics, name).labels(*labels).observe(value)
    if "failure" in message:
        component, reason = message["failure"]
        health.report_failure(str(component), str(reason))
    if "skipped" in message:
        topic, partition, count = message["skipped"]
        health.report_skipped(str(topic), int(partition), int(count))
    if "recovered" in message and health.report_recovered(str(message["recovered"])):
        log.info("%s recovered", message["recovered"])


class ArchiveProcess:
    """Starts the archive's process, restarts it when it dies, stops it gracefully."""

    def __init__(
        self,
        *,
        command: list[str] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.command = command or [sys.executable, "-m", "leadedge.engine.archive_process"]
        self.sleep = sleep
        self.process: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.starts = 0
        # Set once the first child runs.
        self.started = asyncio.Event()

    async def supervise(self) -> None:
        """Run the child until `stop`; a child that dies is reported and started again."""
        backoff_s = RESTART_FIRST_S
        while not self.stopping:
            started = time.monotonic()
            try:
                returncode = await self._run_once()
                reason = f"the archive process exited with code {returncode}"
            except OSError as exc:
                reason = f"the archive process could not start: {exc}"
            if self.stopping:
                return
            log.error("%s; starting it again in %.0f s", reason, backoff_s)
            health.report_failure("archive", reason)
            await self.sleep(backoff_s)
            # A child that ran a while before dying starts the backoff over.
            ran_long = time.monotonic() - started > RESTART_MAX_S
            backoff_s = RESTART_FIRST_S if ran_long else min(backoff_s * 2, RESTART_MAX_S)

    async def _run_once(self) -> int:
        self.process = process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.starts += 1
        self.started.set()
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                _apply(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                log.warning("archive process: unexpected report %r", line[:200])
        return await process.wait()

    async def stop(self, timeout_s: float) -> None:
        """Ask the child to store what it holds and exit; past `timeout_s`, kill it."""
        self.stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        with contextlib.suppress(ConnectionError, OSError):
            process.stdin.write(STOP)
            await process.stdin.drain()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "the archive process did not stop within %.0f s: killed; what it had not "
                "stored is read again from its committed offsets",
                timeout_s,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


if __name__ == "__main__":
    sys.exit(main())
