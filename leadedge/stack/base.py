"""What every stack component provides to the manager."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from leadedge.stack.ports import HOST
from leadedge.stack.process import LaunchSpec

# The user the stack's secured listeners know (its password: `leadedge.stack.tls`).
STACK_USER = "leadedge"


class Component(ABC):
    """One server of the stack: how to install, configure, start and probe it."""

    name: ClassVar[str]
    #: Main listener; a class default that an instance may override.
    port: int
    #: Further ports the server binds (must be free before it starts).
    other_ports: ClassVar[tuple[int, ...]] = ()
    #: Seconds to wait for readiness after a start.
    ready_timeout: ClassVar[float] = 120.0
    #: Seconds between SIGTERM and SIGKILL on stop.
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, state_dir: Path, cache_dir: Path, echo: Callable[[str], None]) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.echo = echo

    @property
    def address(self) -> str:
        """host:port of the main listener."""
        return f"{HOST}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the server binds."""
        return (self.port, *self.other_ports)

    @property
    def home(self) -> Path:
        """Per-state-dir directory of this component (data, config)."""
        return self.state_dir / self.name

    @property
    def log_path(self) -> Path:
        """File receiving the server's stdout and stderr."""
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        """Pid file of the running server."""
        return self.state_dir / "run" / f"{self.name}.pid"

    def install(self) -> None:  # noqa: B027 - a no-op is the right default
        """Download what the server needs into the cache (no-op when already there)."""

    @abstractmethod
    def prepare(self) -> LaunchSpec:
        """Create config and data dirs for a start and say how to launch the server."""

    @abstractmethod
    def is_ready(self) -> bool:
        """One quick probe: does the server answer requests now."""

    def on_ready(self) -> None:  # noqa: B027 - a no-op is the right default
        """Run once the server answers after a start (e.g. create a bucket)."""

    def before_stop(self) -> None:  # noqa: B027 - a no-op is the right default
        """Run before a running server is signalled to stop (e.g. save in-memory data).

        A StackError raised here does not prevent the stop; it is raised after it.
        """

    def base_env(self) -> dict[str, str]:
        """Environment for the server: ours, without variables that would confuse it."""
        env = dict(os.environ)
        for var in ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JAVA_OPTS"):
            env.pop(var, None)
        return env
