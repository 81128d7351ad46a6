"""A second Elasticsearch with security on: a login, API keys, HTTPS from the stack's CA.

What a production cluster looks like to leadedge (Elastic Cloud included), run from the
same distribution as the open one: the file realm holds the stack's user `STACK_USER`
(password in `secure/login.json`, a superuser: it creates the API keys the tests use),
and HTTP is TLS with a certificate of the stack's CA (`secure/ca.pem`).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from leadedge.exceptions import StackError
from leadedge.stack.base import STACK_USER
from leadedge.stack.elasticsearch import ES_VERSION, Elasticsearch
from leadedge.stack.tools import install_lock, java_home, require_java

PLUGIN = "leadedge-security-index-analysis"
PLUGIN_SOURCE = "SecurityIndexAnalysis.java"


def build_plugin(plugins_dir: Path, es_lib: Path, java: Path) -> None:
    """Compile the security index's analysis plugin into `plugins_dir`, once per source.

    The integ-test distribution lacks the analysis-common module whose components the
    security index's mapping names; the plugin (`es_plugin/`) supplies them from Lucene.
    """
    source = resources.files("leadedge.stack").joinpath("es_plugin", PLUGIN_SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = plugins_dir / PLUGIN
    marker = target / "source.sha256"
    if marker.exists() and marker.read_text() == digest:
        return
    javac = java_home(java) / "bin" / "javac"
    if not javac.exists():
        msg = f"elasticsearch-secure: needs javac (a JDK, not a JRE) next to {java}"
        raise StackError(msg)
    with tempfile.TemporaryDirectory() as scratch:
        src = Path(scratch) / PLUGIN_SOURCE
        src.write_bytes(source)
        classes = Path(scratch) / "classes"
        done = subprocess.run(
            [str(javac), "-d", str(classes), "-cp", f"{es_lib}/*", str(src)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            msg = f"elasticsearch-secure: building {PLUGIN} failed: {done.stderr[-2000:]}"
            raise StackError(msg)
        partial = plugins_dir / f".{PLUGIN}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with zipfile.ZipFile(partial / f"{PLUGIN}.jar", "w") as jar:
            for path in sorted(classes.rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
        (partial / "plugin-descriptor.properties").write_text(
            "description=Analysis components of the security index (uax_url_email, "
            "pattern_capture, lowercase, unique)\n"
            f"version={digest}\nname={PLUGIN}\n"
            "classname=org.leadedge.stack.SecurityIndexAnalysis\n"
            f"java.version=17\nelasticsearch.version={ES_VERSION}\n"
        )
        marker_partial = partial / "source.sha256"
        marker_partial.write_text(digest)
        for path in (partial, *partial.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)


class SecureElasticsearch(Elasticsearch):
    """Single-node Elasticsearch on https://127.0.0.1:9201, login required."""

    name = "elasticsearch-secure"
    port = 9201
    other_ports = (9301,)

    def install(self) -> None:
        """The distribution, and the analysis plugin the security index needs in it.

        The plugin goes into the shared distribution: the open Elasticsearch loads it too,
        which only adds analysis components no leadedge index uses.
        """
        super().install()
        with install_lock(self.cache_dir):
            build_plugin(self.dist / "plugins", self.dist / "lib", require_java())

    @property
    def secure_dir(self) -> Path:
        """The CA, the server's key and certificate, and the login (shared with Kafka's)."""
        return self.state_dir / "secure"

    def _login(self) -> tuple[str, str]:
        from leadedge.stack.tls import stack_password

        return STACK_USER, stack_password(self.secure_dir)

    def configure(self, config: Path, dist: Path, java: Path) -> None:
        """Copy the key and certificate into the config dir and add the user."""
        from leadedge.stack.tls import LocalAuthority

        # Elasticsearch reads TLS files only from inside its config dir.
        files = LocalAuthority(self.secure_dir).server("elasticsearch")
        certs = config / "certs"
        certs.mkdir(exist_ok=True)
        shutil.copyfile(files.key, certs / "http-key.pem")
        shutil.copyfile(files.certificate, certs / "http.pem")
        user, password = self._login()
        users = config / "users"
        if users.exists() and any(
            line.startswith(f"{user}:") for line in users.read_text().splitlines()
        ):
            return
        done = subprocess.run(
            [str(dist / "bin" / "elasticsearch-users"), "useradd", user,
             "-p", password, "-r", "superuser"],
            env=self.tool_env(config, java), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            output = (done.stdout + done.stderr).replace(password, "***")
            msg = f"{self.name}: could not add the user {user!r}: {output.strip()[-2000:]}"
            raise StackError(msg)

    def security_settings(self) -> dict[str, str]:
        """Security on, HTTPS with the stack's certificate; API keys (on by default)."""
        return {
            "xpack.security.enabled": "true",
            "xpack.security.http.ssl.enabled": "true",
            "xpack.security.http.ssl.key": "certs/http-key.pem",
            "xpack.security.http.ssl.certificate": "certs/http.pem",
            # One node on loopback: the transport layer carries no traffic between nodes.
            "xpack.security.transport.ssl.enabled": "false",
            "xpack.security.authc.api_key.enabled": "true",
        }

    def health_request(self) -> tuple[urllib.request.Request, ssl.SSLContext | None]:
        """The probe over HTTPS, trusting the stack's CA, with the stack's login."""
        from leadedge.stack.tls import LocalAuthority

        user, password = self._login()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(
            f"https://{self.address}/_cluster/health",
            headers={"Authorization": f"Basic {token}"},
        )
        ca_file = LocalAuthority(self.secure_dir).ca_file
        return request, ssl.create_default_context(cafile=str(ca_file))

    @property
    def url(self) -> str:
        """What clients connect to."""
        return f"https://{self.address}"
