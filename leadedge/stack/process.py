"""Detached server processes tracked by pid files.

A pid file records the pid, the process start time (so a reused pid is never taken for
ours) and a marker string that must appear in the process's command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

# Children started by this interpreter, so their exit can be noticed and reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    """Identity of a process we started."""

    pid: int
    start_ticks: int
    marker: str


@dataclass(frozen=True)
class LaunchSpec:
    """How to start a server process."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    # Substring of the command line that identifies this very server (e.g. its config path).
    marker: str
    # Run as this uid/gid (only possible when we are root); None keeps the current user.
    uid: int | None = None
    gid: int | None = None


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write `record` to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record)) + "\n")
    tmp.replace(path)


def read_pid_file(path: Path) -> PidRecord | None:
    """Return the record in `path`, or None when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), int(data["start_ticks"]), str(data["marker"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None when there is no such process."""
    fields = _stat_fields(pid)
    # Field 22 of /proc/PID/stat; fields[0] here is field 3.
    return int(fields[19]) if fields else None


def cmdline(pid: int) -> str | None:
    """Return the command line of `pid` with arguments joined by spaces, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def is_alive(record: PidRecord) -> bool:
    """Whether the process of `record` still runs (not a zombie, not a reused pid)."""
    _reap(record.pid)
    fields = _stat_fields(record.pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    if int(fields[19]) != record.start_ticks:
        return False
    line = cmdline(record.pid)
    return line is not None and record.marker in line


def spawn(spec: LaunchSpec, log_path: Path) -> PidRecord:
    """Start `spec` in its own session with output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"\n==== {stamp} starting: {' '.join(spec.argv)}\n".encode())
        log.flush()
        # A new session detaches the server from our terminal and gives it its own
        # process group, which stop() signals as a whole (ES's launcher forks a JVM).
        proc = subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=dict(spec.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=spec.uid,
            group=spec.gid,
            extra_groups=[] if spec.uid is not None else None,
        )
    _CHILDREN[proc.pid] = proc
    _wait_for_command_line(proc)
    ticks = start_ticks(proc.pid)
    return PidRecord(proc.pid, ticks if ticks is not None else -1, spec.marker)


def _wait_for_command_line(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    # Popen returns once the child's exec has begun, but the kernel fills in the new
    # command line a moment later; until then /proc/PID/cmdline reads empty and
    # is_alive() would call a server that is starting "not ours".
    deadline = time.monotonic() + timeout
    while not cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, pgid: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if pgid is not None:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, pgid: int | None, record: PidRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        gone = not _group_exists(pgid) if pgid is not None else not is_alive(record)
        if gone or time.monotonic() >= deadline:
            return gone
        time.sleep(0.1)


def terminate(record: PidRecord, timeout: float = 30.0) -> bool:
    """Stop the process of `record` and its process group: SIGTERM, then SIGKILL.

    Returns False when the process was not running (nothing was signalled).
    """
    if not is_alive(record):
        return False
    pid = record.pid
    try:
        pgid: int | None = os.getpgid(pid)
    except ProcessLookupError:
        return False
    # Only signal the whole group when the process leads it (as spawn() arranges);
    # otherwise we would hit unrelated processes.
    if pgid != pid:
        pgid = None
    _signal(pid, pgid, signal.SIGTERM)
    if not _wait_gone(pid, pgid, record, timeout):
        _signal(pid, pgid, signal.SIGKILL)
        _wait_gone(pid, pgid, record, 10.0)
    return True


def tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of the text file `path` ("" when unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
