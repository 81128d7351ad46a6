"""Stack up/down/start/stop/status with a tiny fake server instead of the real ones."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadedge.exceptions import StackError
from leadedge.stack import COMPONENT_NAMES, OPTIONAL_NAMES, Stack, ports, process
from leadedge.stack.base import Component
from leadedge.stack.process import LaunchSpec, PidRecord


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServer(Component):
    """python -m http.server on a free port."""

    name = "fake"
    port = 0
    ready_timeout = 20.0
    stop_timeout = 5.0
    readies = 0

    def prepare(self) -> LaunchSpec:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
        return LaunchSpec(argv=argv, cwd=self.home, env={}, marker=" ".join(argv[1:]))

    def is_ready(self) -> bool:
        return ports.accepts(self.port)

    def on_ready(self) -> None:
        type(self).readies += 1


class CrashingServer(FakeServer):
    name = "crash"

    def prepare(self) -> LaunchSpec:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = ["sh", "-c", "echo boom: bad config >&2; exit 3"]
        return LaunchSpec(argv=argv, cwd=self.home, env={}, marker="boom")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, list[str]]]:
    lines: list[str] = []
    stack = Stack(tmp_path / "state", tmp_path / "cache", lines.append)
    server_cls = type("Fake", (FakeServer,), {"port": _free_port(), "readies": 0})
    stack._components = {"fake": server_cls(stack.state_dir, stack.cache_dir, lines.append)}
    yield stack, lines
    stack.down()


def test_real_components_when_nothing_runs(tmp_path: Path) -> None:
    assert COMPONENT_NAMES == ("kafka", "elasticsearch", "s3")
    stack = Stack(tmp_path / "state", tmp_path / "cache")
    assert [(st.name, st.address, st.running, st.pid) for st in stack.status()] == [
        ("kafka", "127.0.0.1:9092", False, None),
        ("elasticsearch", "127.0.0.1:9200", False, None),
        ("s3", "127.0.0.1:9000", False, None),
    ]
    stack.down()  # nothing of ours runs: a no-op
    with pytest.raises(StackError, match=r"unknown component 'zk'.*elasticsearch-secure"):
        stack.start("zk")
    # The secured Elasticsearch is optional: listed while it runs, started on request.
    assert OPTIONAL_NAMES == ("elasticsearch-secure",)
    assert stack.component("elasticsearch-secure").address == "127.0.0.1:9201"


def test_up_starts_the_optional_components_only_when_asked(
    stack: tuple[Stack, list[str]],
) -> None:
    s, _ = stack
    optional_cls = type(
        "Optional", (FakeServer,), {"name": "elasticsearch-secure", "port": _free_port()}
    )
    s._components["elasticsearch-secure"] = optional_cls(s.state_dir, s.cache_dir, print)
    s.up()
    assert [status.name for status in s.status()] == ["fake"]
    s.up(secure=True)
    assert [(status.name, status.ready) for status in s.status()] == [
        ("fake", True),
        ("elasticsearch-secure", True),
    ]
    s.down()
    assert [status.name for status in s.status()] == ["fake"]


def test_up_status_down(stack: tuple[Stack, list[str]]) -> None:
    s, lines = stack
    s.up()
    [status] = s.status()
    assert status.running and status.ready and status.pid is not None
    assert status.address.startswith("127.0.0.1:")
    assert (s.state_dir / "run" / "fake.pid").exists()
    assert any(line.startswith("fake: ready on") for line in lines)

    pid = status.pid
    s.up()  # no duplicate
    assert s.status()[0].pid == pid
    assert f"fake: already running (pid {pid})" in lines

    s.down()
    [status] = s.status()
    assert (status.running, status.ready, status.pid) == (False, False, None)
    assert not (s.state_dir / "run" / "fake.pid").exists()
    assert ports.is_free(int(status.address.rsplit(":", 1)[1]))
    s.down()  # safe to repeat
    assert lines[-1] == "fake: not running"


def test_stop_and_start_one(stack: tuple[Stack, list[str]]) -> None:
    s, _ = stack
    s.up()
    first = s.status()[0].pid
    s.stop("fake")
    assert not s.status()[0].running
    s.stop("fake")
    s.start("fake")
    again = s.status()[0]
    assert again.ready and again.pid != first
    comp = s.component("fake")
    assert type(comp).readies == 2  # type: ignore[attr-defined]


def test_stale_pid_file_is_removed(stack: tuple[Stack, list[str]]) -> None:
    s, _ = stack
    pid_file = s.state_dir / "run" / "fake.pid"
    # Our own pid with a different marker: alive, but not ours, so never signalled.
    process.write_pid_file(pid_file, PidRecord(pid=1, start_ticks=0, marker="http.server"))
    [status] = s.status()
    assert not status.running
    assert not pid_file.exists()
    s.stop("fake")  # nothing to stop, no error


def test_port_taken_by_a_stranger(stack: tuple[Stack, list[str]]) -> None:
    s, _ = stack
    comp = s.component("fake")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", comp.port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"fake: port 127.0.0.1:{comp.port} .* in use by pid"):
            s.up()
    assert not (s.state_dir / "run" / "fake.pid").exists()


def test_crash_while_starting_reports_log(tmp_path: Path) -> None:
    s = Stack(tmp_path / "state", tmp_path / "cache", lambda _: None)
    s._components = {"crash": CrashingServer(s.state_dir, s.cache_dir, lambda _: None)}
    with pytest.raises(StackError, match=r"(?s)crash exited while starting.*boom: bad config"):
        s.up()
    assert not s.status()[0].running
