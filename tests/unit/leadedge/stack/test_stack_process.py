"""Pid files, liveness and stopping, with real short-lived subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from leadedge.stack import ports, process
from leadedge.stack.process import LaunchSpec, PidRecord


def _spawn(tmp_path: Path, argv: list[str], marker: str) -> PidRecord:
    spec = LaunchSpec(argv=argv, cwd=tmp_path, env=dict(os.environ), marker=marker)
    return process.spawn(spec, tmp_path / "logs" / "x.log")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_pid_file_round_trip(tmp_path: Path) -> None:
    record = PidRecord(pid=1234, start_ticks=99, marker="kafka.Kafka /x/server.properties")
    path = tmp_path / "run" / "kafka.pid"
    process.write_pid_file(path, record)
    assert process.read_pid_file(path) == record


@pytest.mark.parametrize("content", ["", "12", "{not json", '{"pid": 1}'])
def test_unreadable_pid_file_is_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.pid"
    path.write_text(content)
    assert process.read_pid_file(path) is None
    assert process.read_pid_file(tmp_path / "absent.pid") is None


def test_spawn_is_alive_and_terminate(tmp_path: Path) -> None:
    record = _spawn(tmp_path, ["sleep", "30"], marker="sleep 30")
    assert process.is_alive(record)
    assert os.getpgid(record.pid) == record.pid  # own session and group
    assert "starting: sleep 30" in (tmp_path / "logs" / "x.log").read_text()
    assert process.terminate(record, timeout=5)
    assert not process.is_alive(record)
    assert not process.terminate(record, timeout=5)  # safe to repeat


def test_a_server_is_ours_from_the_moment_spawn_returns(tmp_path: Path) -> None:
    # The kernel fills in a new command line just after exec lets the parent go on;
    # spawn() must not return inside that window, or the server looks not ours.
    records = []
    try:
        for n in range(40):
            record = _spawn(tmp_path, ["sleep", f"{30 + n}"], marker=f"sleep {30 + n}")
            records.append(record)
            assert process.is_alive(record), process.cmdline(record.pid)
    finally:
        for record in records:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGTERM)
        for record in records:
            process.terminate(record, timeout=5)


def test_reused_pid_is_not_ours(tmp_path: Path) -> None:
    record = _spawn(tmp_path, ["sleep", "30"], marker="sleep 30")
    try:
        wrong_start = PidRecord(record.pid, record.start_ticks + 1, record.marker)
        wrong_cmd = PidRecord(record.pid, record.start_ticks, "kafka.Kafka")
        assert not process.is_alive(wrong_start)
        assert not process.is_alive(wrong_cmd)
        # Neither may be signalled.
        assert not process.terminate(wrong_start)
        assert not process.terminate(wrong_cmd)
        assert process.is_alive(record)
    finally:
        process.terminate(record, timeout=5)


def test_terminate_kills_whole_group(tmp_path: Path) -> None:
    record = _spawn(tmp_path, ["sh", "-c", "sleep 31 & sleep 32; wait"], marker="sleep 31")
    deadline = time.monotonic() + 5
    while len(_group_members(record.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group_members(record.pid)) == 3
    process.terminate(record, timeout=5)
    assert _group_members(record.pid) == []


def test_terminate_falls_back_to_sigkill(tmp_path: Path) -> None:
    # An ignored SIGTERM stays ignored across exec, so the sleep ignores it too.
    record = _spawn(tmp_path, ["sh", "-c", "trap '' TERM; sleep 33; true"], marker="sleep 33")
    time.sleep(0.2)
    started = time.monotonic()
    assert process.terminate(record, timeout=0.5)
    assert not process.is_alive(record)
    assert _group_members(record.pid) == []
    assert time.monotonic() - started < 5


def test_exited_child_is_not_alive(tmp_path: Path) -> None:
    record = _spawn(tmp_path, [sys.executable, "-c", "print('bye')"], marker="bye")
    deadline = time.monotonic() + 10
    while process.is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.is_alive(record)
    assert "bye" in process.tail(tmp_path / "logs" / "x.log")


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 3) == "line 97\nline 98\nline 99"
    assert process.tail(tmp_path / "absent.log") == ""


def test_ports_free_busy_and_owner() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not ports.is_free(port)
        assert ports.accepts(port)
        holder = ports.owner(port)
        assert holder is not None and f"pid {os.getpid()} " in holder
    assert ports.is_free(port)
    assert ports.wait_free((port,), timeout=1)
