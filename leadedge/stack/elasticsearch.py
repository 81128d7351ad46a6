"""Elasticsearch from the integ-test-zip distribution, run on the machine's Java."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import ssl
import stat
import subprocess
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from leadedge.exceptions import StackError
from leadedge.stack.base import Component
from leadedge.stack.process import LaunchSpec
from leadedge.stack.tools import install_lock, java_home, require_java, run_maven

ES_VERSION = "8.19.7"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
#: Elasticsearch refuses to run as root; as root we run it as this system user.
SERVICE_USER = "leadedge"


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpack `archive` into `dest` keeping the executable bits zipfile drops.

    Everything is made readable by all, so a service user can run the shared copy.
    """
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if info.is_dir():
                path.chmod(0o755)
            elif mode:
                path.chmod(mode | 0o444)


def ensure_service_user() -> tuple[int, int]:
    """Return the uid and gid of SERVICE_USER, creating that system user if needed."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            msg = (
                f"elasticsearch: refuses to run as root and the user {SERVICE_USER!r} "
                f"could not be created: {done.stderr.strip()}"
            )
            raise StackError(msg) from None
    return entry.pw_uid, entry.pw_gid


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for parent, dirs, names in os.walk(root):
        for name in (*dirs, *names):
            os.chown(Path(parent) / name, uid, gid, follow_symlinks=False)


def _searchable(path: Path) -> bool:
    # Parents that do not exist yet will be created with the default (searchable) mode.
    return all(
        parent.stat().st_mode & stat.S_IXOTH for parent in (path, *path.parents) if parent.exists()
    )


def _require_searchable(path: Path) -> None:
    # The service user must be able to reach `path` through every parent directory.
    for parent in (path, *path.parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            msg = (
                f"elasticsearch: runs as user {SERVICE_USER!r} (it refuses root), which "
                f"cannot enter {parent}; use state and cache dirs outside it or chmod o+x it"
            )
            raise StackError(msg)


class Elasticsearch(Component):
    """Single-node Elasticsearch 8.19 on 127.0.0.1:9200, security off.

    The distribution in the cache stays read-only and shared; config (copied from
    the distribution on the first start), data and logs live in
    `state_dir/elasticsearch/`, so a restart keeps every index.
    """

    name = "elasticsearch"
    port = 9200
    other_ports = (9300,)
    ready_timeout = 180.0
    stop_timeout = 60.0

    @property
    def dist(self) -> Path:
        """The unpacked distribution in the cache."""
        return self.cache_dir / f"elasticsearch-{ES_VERSION}"

    @property
    def home(self) -> Path:
        """Config, data, logs: in the state dir, unless the service user cannot reach it.

        As root, a state dir below a private directory (a `mktemp -d` checkout, a root
        home) is closed to the service user; then Elasticsearch keeps its files in the
        system temp dir instead, under a name fixed by the state dir.
        """
        default = self.state_dir / self.name
        if os.geteuid() != 0 or _searchable(self.state_dir):
            return default
        digest = hashlib.sha256(str(default).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"leadedge-elasticsearch-{digest}"

    def _runnable_dist(self) -> Path:
        # The same problem for the cache: run from a copy the service user can read.
        if os.geteuid() != 0 or _searchable(self.dist):
            return self.dist
        copy = self.home / "dist"
        if not copy.is_dir():
            staging = self.home / "dist.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(self.dist, staging, symlinks=True)
            staging.rename(copy)
        return copy

    def install(self) -> None:
        """Fetch the distribution zip with Maven and unpack it, unless the cache has it."""
        if self.dist.is_dir():
            return
        with install_lock(self.cache_dir):
            if self.dist.is_dir():
                return
            archive = self.cache_dir / f"elasticsearch-{ES_VERSION}.zip"
            if not archive.exists():
                self.echo(f"elasticsearch: fetching Elasticsearch {ES_VERSION} with Maven …")
                run_maven(
                    self.name,
                    ["dependency:copy", f"-Dartifact={ARTIFACT}",
                     f"-DoutputDirectory={self.cache_dir}"],
                    cwd=self.cache_dir,
                    log_path=self.state_dir / "logs" / "elasticsearch-install.log",
                    echo=self.echo,
                )  # fmt: skip
            self.echo(f"elasticsearch: unpacking {archive.name}")
            partial = self.cache_dir / f".elasticsearch-{ES_VERSION}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            extract_zip(archive, partial)
            # The zip holds one top directory; renaming it in makes the install atomic.
            (partial / self.dist.name).rename(self.dist)
            shutil.rmtree(partial)
            archive.unlink()

    def prepare(self) -> LaunchSpec:
        """Create config, data, logs and tmp dirs; as root, hand them to the service user."""
        self.home.mkdir(parents=True, exist_ok=True)
        dist = self._runnable_dist()
        config = self.home / "config"
        data, logs, tmp = self.home / "data", self.home / "logs", self.home / "tmp"
        if not config.is_dir():
            staging = self.home / "config.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(dist / "config", staging)
            staging.rename(config)
        for directory in (data, logs, tmp):
            directory.mkdir(parents=True, exist_ok=True)
        java = require_java()
        self.configure(config, dist, java)
        uid = gid = None
        if os.geteuid() == 0:
            uid, gid = ensure_service_user()
            _chown_tree(self.home, uid, gid)
            _require_searchable(dist / "bin")
            _require_searchable(self.home.parent)
        env = self.tool_env(config, java)
        env.update(ES_JAVA_OPTS="-Xms512m -Xmx1g", ES_TMPDIR=str(tmp))
        settings = {
            "discovery.type": "single-node",
            **self.security_settings(),
            "network.host": "127.0.0.1",
            "http.port": str(self.port),
            "transport.port": str(self.other_ports[0]),
            "path.data": str(data),
            "path.logs": str(logs),
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        argv = [str(dist / "bin" / "elasticsearch")]
        for key, value in settings.items():
            argv += ["-E", f"{key}={value}"]
        return LaunchSpec(
            argv=argv, cwd=self.home, env=env, marker=f"path.data={data}", uid=uid, gid=gid
        )

    def tool_env(self, config: Path, java: Path) -> dict[str, str]:
        """The environment of the server and of its command-line tools."""
        env = self.base_env()
        env.pop("JAVA_HOME", None)  # ignored by ES, and it warns about it
        env.update(ES_JAVA_HOME=str(java_home(java)), ES_PATH_CONF=str(config))
        return env

    def configure(self, config: Path, dist: Path, java: Path) -> None:
        """Add to the config dir what this server needs beyond the distribution's files."""

    def security_settings(self) -> dict[str, str]:
        """The `xpack.security` settings: off, the stack's open Elasticsearch."""
        return {"xpack.security.enabled": "false"}

    def health_request(self) -> tuple[urllib.request.Request, ssl.SSLContext | None]:
        """The readiness probe's request and the TLS context it needs."""
        return urllib.request.Request(f"http://{self.address}/_cluster/health"), None

    def is_ready(self) -> bool:
        """`GET /_cluster/health` reports yellow or green (`GET /` is 405 on this build)."""
        try:
            request, context = self.health_request()
            with urllib.request.urlopen(request, timeout=3, context=context) as resp:
                health = json.load(resp)
        except (OSError, ValueError):
            return False
        return isinstance(health, dict) and health.get("status") in ("yellow", "green")
