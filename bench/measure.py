"""Figures read off a process and the machine: its /metrics, /proc, CPU share, progress."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value} (labels as exposed)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in metrics.items():
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted):
            total += value
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    fields: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Progress:
    """(time, count) samples of something that counts up to a goal."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    # The worker's CPU seconds when the first record was handled (start-up excluded).
    cpu_at_first: float | None = None

    def add(self, count: int) -> None:
        self.samples.append((time.monotonic(), count))

    def rate(self, goal: int) -> tuple[float, float]:
        """(events/s, seconds) from the first sample that saw work to the first at the goal.

        The count already reached at the first sample that saw work is taken off, so the
        worker's start-up (group join, recovery) is not counted against it.
        """
        started = next(((t, c) for t, c in self.samples if c > 0), None)
        finished = next(((t, c) for t, c in self.samples if c >= goal), None)
        if started is None or finished is None or finished[0] <= started[0]:
            return 0.0, 0.0
        seconds = finished[0] - started[0]
        return (finished[1] - started[1]) / seconds, seconds


# What a process is, from its command line: the first kind all of whose markers it holds.
PROCESS_KINDS = (
    ("worker", ("faust", " worker")),
    ("elasticsearch", ("java", "org.elasticsearch")),
    ("kafka", ("java", "kafka.Kafka")),
    ("load", ("python", "bench.loadgen")),
    ("s3", ("moto",)),
)


def _process_kind(pid: str) -> str:
    if pid == str(os.getpid()):
        return "bench"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return "other"
    for kind, markers in PROCESS_KINDS:
        if all(marker in command for marker in markers):
            return kind
    return "other"


class ProcessCpu:
    """CPU seconds each kind of process (worker, Elasticsearch, Kafka, load) spends.

    `observe` reads every process's CPU time; call it often enough (every second) that
    a process which exits meanwhile (the load generator) is counted up to near its end.
    `cores` is what each kind spent between the first and the last reading, in cores.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.kinds: dict[str, str] = {}
        self.ended = self.started
        self._initial = True
        self.observe()
        self._initial = False

    def observe(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            used = cpu_seconds(int(entry.name))
            if entry.name not in self.kinds:
                self.kinds[entry.name] = _process_kind(entry.name)
                # A process born after the first reading counts from zero.
                self.first[entry.name] = used if self._initial else 0.0
            if used:
                self.last[entry.name] = used
        self.ended = time.monotonic()

    def cores(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for pid, used in self.last.items():
            kind = self.kinds[pid]
            spent[kind] = spent.get(kind, 0.0) + max(used - self.first.get(pid, 0.0), 0.0)
        seconds = max(self.ended - self.started, 1e-9)
        return {kind: round(total / seconds, 2) for kind, total in sorted(spent.items())}


class CpuMeter:
    """Busy share of the whole machine (all cores) between two readings of /proc/stat."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def busy(self) -> float:
        busy, total = self._read()
        spent = total - self.start[1]
        return (busy - self.start[0]) / spent if spent else 0.0


def machine_info() -> dict[str, Any]:
    """nproc, memory, CPU model, Python."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
