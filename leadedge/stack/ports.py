"""Local TCP port checks: is a port free, and who holds it."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from leadedge.stack.process import cmdline

HOST = "127.0.0.1"
_LISTEN = "0A"


def is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same as the servers do: sockets in TIME_WAIT from a previous run must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_free(ports: tuple[int, ...], timeout: float) -> bool:
    """Wait until every port in `ports` is free; False on timeout."""
    deadline = time.monotonic() + timeout
    while not all(is_free(p) for p in ports):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == _LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def owner(port: int) -> str | None:
    """Best effort: "pid N (command)" of the process listening on `port`, or None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        line = " ".join((cmdline(int(entry.name)) or "?").split())
                        return f"pid {entry.name} ({line[:120]})"
    return None
