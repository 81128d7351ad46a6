"""External tools the stack needs (java, mvn) and the shared Maven download step."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from leadedge.exceptions import StackError
from leadedge.stack.process import tail

MIN_JAVA = 17
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([^)]*)\)")
_DOWNLOADING = re.compile(r"Downloading from [^:]+: (\S+)")


def require_java() -> Path:
    """Path of a `java` on PATH that is at least Java 17, else a StackError."""
    found = shutil.which("java")
    if found is None:
        msg = (
            "java is not on PATH: install OpenJDK 17+ "
            "(e.g. apt-get install openjdk-17-jdk-headless)"
        )
        raise StackError(msg)
    major = _java_major(found)
    if major is not None and major < MIN_JAVA:
        msg = f"{found} is Java {major}; Kafka and Elasticsearch need OpenJDK {MIN_JAVA}+"
        raise StackError(msg)
    return Path(found)


@lru_cache(maxsize=4)
def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _JAVA_VERSION.search(out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report themselves as "1.8".
    return int(match.group(2) or 0) if major == 1 else major


def java_home(java: Path) -> Path:
    """Return the JDK home of `java`, following symlinks (…/jdk/bin/java → …/jdk)."""
    return Path(os.path.realpath(java)).parent.parent


def require_mvn() -> str:
    """Path of `mvn` on PATH, else a StackError."""
    found = shutil.which("mvn")
    if found is None:
        msg = "mvn is not on PATH: install Maven 3.8+ (e.g. apt-get install maven)"
        raise StackError(msg)
    return found


@contextmanager
def install_lock(cache_dir: Path) -> Iterator[None]:
    """Serialise installs into `cache_dir` across processes."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
#: Downloads at least this big get a line of their own; smaller ones are counted.
BIG_DOWNLOAD = 1_000_000
_COUNT_EVERY = 50


def parse_size(text: str) -> float:
    """Bytes in a Maven size such as "2.1 MB" or "683 kB" (0 when not understood)."""
    number, _, unit = text.partition(" ")
    try:
        return float(number) * _UNITS.get(unit, 0)
    except ValueError:
        return 0.0


class DownloadReport:
    """Condenses Maven's "Downloading/Downloaded" lines into a few progress lines."""

    def __init__(self, name: str, echo: Callable[[str], None]) -> None:
        self.name = name
        self.echo = echo
        self.files = 0
        self.size = 0.0

    def feed(self, line: str) -> None:
        """Take one line of Maven output; echo big artifacts and a running count."""
        if done := _DOWNLOADED.search(line):
            self.files += 1
            size = parse_size(done.group(2).split(" at ")[0])
            self.size += size
            if size >= BIG_DOWNLOAD:
                artifact = done.group(1).rsplit("/", 1)[-1]
                self.echo(f"{self.name}: downloaded {artifact} ({done.group(2)})")
            elif self.files % _COUNT_EVERY == 0:
                self.echo(f"{self.name}: {self.summary()} so far …")
        elif (started := _DOWNLOADING.search(line)) and started.group(1).endswith(".zip"):
            self.echo(f"{self.name}: downloading {started.group(1).rsplit('/', 1)[-1]} …")

    def summary(self) -> str:
        """E.g. "417 files downloaded (62.4 MB)"."""
        plural = "" if self.files == 1 else "s"
        return f"{self.files} file{plural} downloaded ({self.size / 1e6:.1f} MB)"


def run_maven(
    name: str, args: Sequence[str], cwd: Path, log_path: Path, echo: Callable[[str], None]
) -> None:
    """Run `mvn -B ARGS` in `cwd`, logging all its output and echoing a condensed view."""
    mvn = require_mvn()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report = DownloadReport(name, echo)
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [mvn, "-B", "-Dstyle.color=never", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            report.feed(line)
        code = proc.wait()
    if code != 0:
        msg = f"{name}: mvn {' '.join(args[:1])} failed (exit {code}):\n{tail(log_path)}"
        raise StackError(msg)
    if report.files:
        echo(f"{name}: {report.summary()} by Maven")
