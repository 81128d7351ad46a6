"""py-spy attached to a running worker, and a summary of where its CPU time went.

py-spy samples the process from outside (no change to the worker, a few % overhead),
writes a speedscope file (open it at speedscope.app) that this module sums up: the
functions with the most samples on-CPU at the top of the stack ("self") and anywhere on
it ("total"), and the share of samples by package.

    python -m bench.profiling FILE.speedscope.json   # print the summary of a profile
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.common import log


def py_spy() -> str:
    """The py-spy binary beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        msg = "py-spy is not installed: pip install py-spy (into the project's venv)"
        raise RuntimeError(msg)
    return found


class Profiler:
    """`py-spy record` on `pid` until `stop()`, written to `output` (speedscope)."""

    def __init__(self, pid: int, output: Path, rate: int = 100, *, gil: bool = True) -> None:
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        # `--gil`: only the thread holding the interpreter lock is sampled, so the
        # profile is where the process spends its CPU, not threads waiting on sockets.
        self.process = subprocess.Popen(
            [
                py_spy(),
                "record",
                *(["--gil"] if gil else []),
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "speedscope",
                "--function",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        log(f"profile: py-spy sampling pid {pid} at {rate} Hz into {output}")

    def stop(self) -> None:
        """SIGINT makes py-spy write its file and exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, errors = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        if not self.output.exists():
            log(f"profile: py-spy wrote nothing: {errors.decode(errors='replace')[-500:]}")


OWN_PACKAGES = frozenset({"leadedge", "agents", "tables"})
FOCUS = "merge_requests"  # the merge agent (agents/merge.py)


def _package(path: str) -> str:
    """A frame's package: the first part of its module path."""
    if not path:
        return "?"
    parts = Path(path).parts
    for marker in ("site-packages", "lib"):
        if marker in parts:
            index = len(parts) - 1 - parts[::-1].index(marker)
            rest = parts[index + 1 :]
            if rest and not rest[0].startswith("python3"):
                return rest[0].removesuffix(".py")
            if len(rest) > 1:
                return "stdlib:" + rest[1].removesuffix(".py")
    for marker in ("leadedge", "agents", "tables", "bench"):
        if marker in parts:
            return marker
    return parts[0] if parts else "?"


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and total samples per function, and samples by package of the leaf frame."""
    data = orjson.loads(path.read_bytes())
    frames = data["shared"]["frames"]
    names = [f"{f['name']} ({Path(f.get('file', '')).name}:{f.get('line', 0)})" for f in frames]
    packages = [_package(f.get("file", "")) for f in frames]
    loop_frames = {i for i, f in enumerate(frames) if f["name"] == "Handle._run"}
    own = {i for i, p in enumerate(packages) if p in OWN_PACKAGES}
    self_count: Counter[str] = Counter()
    total_count: Counter[str] = Counter()
    own_total: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    by_task: Counter[str] = Counter()
    in_focus: Counter[str] = Counter()
    samples = 0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            samples += weight
            self_count[names[stack[-1]]] += weight
            by_package[packages[stack[-1]]] += weight
            for name in {names[i] for i in stack}:
                total_count[name] += weight
            for name in {names[i] for i in stack if i in own}:
                own_total[name] += weight
            # The callback or coroutine the event loop was running: which task spends it.
            task = "(outside the event loop's callbacks)"
            for depth in range(len(stack) - 2, -1, -1):
                if stack[depth] in loop_frames:
                    task = frames[stack[depth + 1]]["name"]
                    break
            by_task[task] += weight
            # What the merge agent's own loop spends its time in, one level down.
            for depth in range(len(stack) - 1):
                if frames[stack[depth]]["name"] == FOCUS:
                    in_focus[names[stack[depth + 1]]] += weight
                    break
            else:
                if frames[stack[-1]]["name"] == FOCUS:
                    in_focus["(its own lines)"] += weight
    share = 100 / samples if samples else 0

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(n * share, 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "file": path.name,
        "samples": samples,
        "self": rows(self_count),
        "total": rows(total_count),
        "own_total": rows(own_total),
        "merge_agent": rows(in_focus),
        "by_task": [
            {"task": name, "percent": round(n * share, 1)} for name, n in by_task.most_common(top)
        ],
        "by_package": [
            {"package": name, "percent": round(n * share, 1)}
            for name, n in by_package.most_common(top)
        ],
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"profile {summary['file']}: {summary['samples']:,} samples")
    for title, key in (
        ("self (on top of the stack)", "self"),
        ("leadedge's own functions, total (anywhere on the stack)", "own_total"),
    ):
        print(f"  {title}:")
        for row in summary[key]:
            print(f"    {row['percent']:5.1f}%  {row['function']}")
    print("  inside the merge agent's loop (share of all samples), one call down:")
    for row in summary["merge_agent"]:
        print(f"    {row['percent']:5.1f}%  {row['function']}")
    print("  by task (what the event loop was running):")
    for row in summary["by_task"]:
        print(f"    {row['percent']:5.1f}%  {row['task']}")
    print("  by package of the frame on top:")
    for row in summary["by_package"]:
        print(f"    {row['percent']:5.1f}%  {row['package']}")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m bench.profiling FILE.speedscope.json", file=sys.stderr)
        return 2
    with contextlib.suppress(BrokenPipeError):
        print_summary(summarize(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
