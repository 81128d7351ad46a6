"""The local stack: Kafka, Elasticsearch and an S3 API as plain processes on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leadedge.exceptions import StackError
from leadedge.stack import ports, process
from leadedge.stack.base import Component
from leadedge.stack.elasticsearch import Elasticsearch
from leadedge.stack.elasticsearch_secure import SecureElasticsearch
from leadedge.stack.kafka import Kafka
from leadedge.stack.process import PidRecord
from leadedge.stack.s3 import S3

COMPONENT_NAMES: tuple[str, ...] = ("kafka", "elasticsearch", "s3")
#: Started by `up(secure=True)` or by name; stopped by `down`; in `status` only while running.
OPTIONAL_NAMES: tuple[str, ...] = ("elasticsearch-secure",)

_POLL_S = 0.5
_ECHO_EVERY_S = 5.0
_PORT_RELEASE_S = 15.0
_EXEC_S = 5.0


def _await_exec(record: PidRecord) -> None:
    """Wait until a new process shows its command line, or has exited.

    The kernel fills in /proc/PID/cmdline a moment after exec; until then the process
    does not look like ours and would be taken for one that exited while starting.
    """
    deadline = time.monotonic() + _EXEC_S
    while not process.is_alive(record) and time.monotonic() < deadline:
        if process.start_ticks(record.pid) != record.start_ticks:
            return  # exited (and reaped)
        time.sleep(0.01)


@dataclass(frozen=True)
class ComponentStatus:
    """What `Stack.status` reports about one component."""

    name: str
    address: str
    running: bool
    ready: bool
    pid: int | None


class Stack:
    """Installs, starts and stops the stack's servers.

    State (config, data, logs, pid files) lives under `state_dir`; downloads go to
    `cache_dir`, which several state dirs can share. Only processes recorded in
    our pid files are ever stopped.
    """

    def __init__(
        self, state_dir: Path, cache_dir: Path, echo: Callable[[str], None] = print
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.cache_dir = Path(cache_dir).absolute()
        self.echo = echo
        self._components: dict[str, Component] = {
            c.name: c
            for c in (
                Kafka(self.state_dir, self.cache_dir, echo),
                Elasticsearch(self.state_dir, self.cache_dir, echo),
                S3(self.state_dir, self.cache_dir, echo),
                SecureElasticsearch(self.state_dir, self.cache_dir, echo),
            )
        }

    def component(self, name: str) -> Component:
        """Return the component called `name`; a StackError lists the valid names."""
        try:
            return self._components[name]
        except KeyError:
            names = ", ".join((*COMPONENT_NAMES, *OPTIONAL_NAMES))
            msg = f"unknown component {name!r}; choose one of {names}"
            raise StackError(msg) from None

    def up(self, secure: bool = False) -> None:
        """Install and start every component that is not running; wait until all are ready.

        Components already running are left alone (only waited for if still starting).
        `secure` adds the optional ones: Elasticsearch with security on.
        """
        components = [
            comp for comp in self._components.values() if secure or comp.name not in OPTIONAL_NAMES
        ]
        for comp in components:
            if self._record(comp) is None:
                comp.install()
        started: dict[str, float] = {}
        for comp in components:
            record = self._record(comp)
            if record is None:
                self._launch(comp)
                started[comp.name] = time.monotonic()
            else:
                self.echo(f"{comp.name}: already running (pid {record.pid})")
        for comp in components:
            self._await_ready(comp, started.get(comp.name, time.monotonic()))

    def down(self) -> None:
        """Stop every component we started; safe to repeat."""
        for comp in reversed(self._components.values()):
            self._stop(comp)

    def start(self, name: str) -> None:
        """Start one component (after a `stop`), keeping its data; wait until it is ready."""
        comp = self.component(name)
        record = self._record(comp)
        if record is not None:
            self.echo(f"{name}: already running (pid {record.pid})")
        else:
            comp.install()
            self._launch(comp)
        self._await_ready(comp, time.monotonic())

    def stop(self, name: str) -> None:
        """Stop one component's process (and its children); safe to repeat."""
        self._stop(self.component(name))

    def status(self) -> list[ComponentStatus]:
        """Whether each component runs and answers requests (optional ones while running)."""
        result = []
        for comp in self._components.values():
            record = self._record(comp)
            running = record is not None
            if comp.name in OPTIONAL_NAMES and not running:
                continue
            result.append(
                ComponentStatus(
                    name=comp.name,
                    address=comp.address,
                    running=running,
                    ready=running and comp.is_ready(),
                    pid=record.pid if record else None,
                )
            )
        return result

    def _record(self, comp: Component) -> PidRecord | None:
        """Return the live process of `comp`, removing a stale pid file."""
        record = process.read_pid_file(comp.pid_path)
        if record is not None and process.is_alive(record):
            return record
        comp.pid_path.unlink(missing_ok=True)
        return None

    def _launch(self, comp: Component) -> None:
        for port in comp.ports:
            if not ports.is_free(port):
                holder = ports.owner(port) or "another process"
                msg = (
                    f"{comp.name}: port {ports.HOST}:{port} is already in use by {holder}; "
                    "stop it first"
                )
                raise StackError(msg)
        spec = comp.prepare()
        record = process.spawn(spec, comp.log_path)
        _await_exec(record)
        process.write_pid_file(comp.pid_path, record)
        self.echo(f"{comp.name}: started (pid {record.pid}), log {comp.log_path}")

    def _await_ready(self, comp: Component, since: float) -> None:
        next_echo = time.monotonic() + _ECHO_EVERY_S
        while True:
            if self._record(comp) is None:
                msg = (
                    f"{comp.name} exited while starting; last lines of {comp.log_path}:\n"
                    f"{process.tail(comp.log_path)}"
                )
                raise StackError(msg)
            if comp.is_ready():
                break
            now = time.monotonic()
            if now - since > comp.ready_timeout:
                self._stop(comp)
                msg = (
                    f"{comp.name} did not become ready on {comp.address} within "
                    f"{comp.ready_timeout:.0f}s; last lines of {comp.log_path}:\n"
                    f"{process.tail(comp.log_path)}"
                )
                raise StackError(msg)
            if now >= next_echo:
                self.echo(f"waiting for {comp.name} on {comp.address} … {now - since:.0f}s")
                next_echo += _ECHO_EVERY_S
            time.sleep(_POLL_S)
        comp.on_ready()
        self.echo(f"{comp.name}: ready on {comp.address} ({time.monotonic() - since:.0f}s)")

    def _stop(self, comp: Component) -> None:
        record = self._record(comp)
        if record is None:
            self.echo(f"{comp.name}: not running")
            return
        self.echo(f"{comp.name}: stopping (pid {record.pid})")
        failure: StackError | None = None
        try:
            comp.before_stop()
        except StackError as exc:
            failure = exc
        process.terminate(record, comp.stop_timeout)
        if process.is_alive(record):
            msg = f"{comp.name}: pid {record.pid} survived SIGKILL"
            raise StackError(msg)
        comp.pid_path.unlink(missing_ok=True)
        if not ports.wait_free(comp.ports, _PORT_RELEASE_S):
            busy = [p for p in comp.ports if not ports.is_free(p)]
            holder = ports.owner(busy[0]) if busy else None
            msg = f"{comp.name}: stopped, but port {busy} is still held by {holder or 'someone'}"
            raise StackError(msg)
        self.echo(f"{comp.name}: stopped")
        if failure is not None:
            raise failure
