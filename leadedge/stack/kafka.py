"""Apache Kafka in KRaft mode (one combined broker and controller), run from Maven jars."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

from leadedge.exceptions import StackError
from leadedge.stack.base import STACK_USER, Component
from leadedge.stack.ports import HOST, accepts
from leadedge.stack.process import LaunchSpec
from leadedge.stack.tools import install_lock, require_java, run_maven

KAFKA_VERSION = "4.1.1"
PORT = 9092
CONTROLLER_PORT = 9093
# SASL_SSL: SCRAM-SHA-512/256 or PLAIN as `leadedge` (password in `secure/login.json`),
# a certificate of the stack's CA (`secure/ca.pem`).
SECURE_PORT = 9094
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"

SERVER_PROPERTIES = f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{CONTROLLER_PORT}
listeners=PLAINTEXT://{HOST}:{PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT},SECURE://{HOST}:{SECURE_PORT}
advertised.listeners=PLAINTEXT://{HOST}:{PORT},SECURE://{HOST}:{SECURE_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.secure.scram-sha-512.sasl.jaas.config={SCRAM_LOGIN} required;
listener.name.secure.scram-sha-256.sasl.jaas.config={SCRAM_LOGIN} required;
listener.name.secure.plain.sasl.jaas.config={PLAIN_LOGIN} required user_{STACK_USER}="{{password}}";
listener.name.secure.ssl.keystore.type=PEM
listener.name.secure.ssl.keystore.location={{keystore}}
inter.broker.listener.name=PLAINTEXT
log.dirs={{log_dirs}}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
"""


def render_server_properties(log_dir: Path, *, keystore: Path, password: str) -> str:
    """Render the broker's server.properties, keeping its data in `log_dir`."""
    return SERVER_PROPERTIES.format(log_dirs=log_dir, keystore=keystore, password=password)


def _resource(name: str) -> str:
    return files("leadedge.stack").joinpath(name).read_text()


class Kafka(Component):
    """Kafka 4.1 broker and controller on 127.0.0.1:9092 (controller 9093).

    Its data lives in `state_dir/kafka/data`; the storage is formatted once, so a
    restart keeps topics and records.
    """

    name = "kafka"
    port = PORT
    other_ports = (CONTROLLER_PORT, SECURE_PORT)
    ready_timeout = 120.0
    stop_timeout = 60.0

    @property
    def dist(self) -> Path:
        """Shared install in the cache: `pom.xml` and `libs/*.jar`."""
        return self.cache_dir / f"kafka-{KAFKA_VERSION}"

    @property
    def libs(self) -> Path:
        """Directory of the broker's jars."""
        return self.dist / "libs"

    @property
    def _complete(self) -> Path:
        return self.dist / ".complete"

    def install(self) -> None:
        """Fetch the broker's jars with Maven unless the cache has them."""
        if self._complete.exists():
            return
        with install_lock(self.cache_dir):
            if self._complete.exists():
                return
            self.dist.mkdir(parents=True, exist_ok=True)
            # Maven writes target/ next to the pom, so the pom goes to the writable cache.
            pom = self.dist / "pom.xml"
            pom.write_text(_resource("kafka-pom.xml"))
            shutil.rmtree(self.libs, ignore_errors=True)
            self.echo(f"kafka: fetching the Kafka {KAFKA_VERSION} jars with Maven …")
            run_maven(
                self.name,
                [
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={self.libs}",
                    "-DincludeScope=runtime",
                    "-f",
                    str(pom),
                ],
                cwd=self.dist,
                log_path=self.state_dir / "logs" / "kafka-install.log",
                echo=self.echo,
            )
            shutil.rmtree(self.dist / "target", ignore_errors=True)
            jars = len(list(self.libs.glob("*.jar")))
            self._complete.write_text(f"{jars} jars\n")
            self.echo(f"kafka: {jars} jars in {self.libs}")

    def prepare(self) -> LaunchSpec:
        """Write server.properties and the log4j2 config; format the storage once."""
        java = str(require_java())
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        # `cryptography` comes with the stack's extra: imported when a stack starts.
        from leadedge.stack.tls import LocalAuthority, stack_password

        keystore = LocalAuthority(self.secure_dir).server("kafka").key_and_certificate
        password = stack_password(self.secure_dir)
        props.write_text(render_server_properties(data, keystore=keystore, password=password))
        props.chmod(0o600)
        log4j = self.home / "log4j2.yaml"
        log4j.write_text(_resource("kafka-log4j2.yaml"))
        common = [f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.libs}/*"]
        if not (data / "meta.properties").exists():
            self._format([java, *common], props, password)
        return LaunchSpec(
            argv=[java, "-Xms256m", "-Xmx768m", *common, "kafka.Kafka", str(props)],
            cwd=self.home,
            env=self.base_env(),
            marker=str(props),
        )

    @property
    def secure_dir(self) -> Path:
        """The CA, the broker's key and certificate, and the SASL login of SECURE_PORT."""
        return self.state_dir / "secure"

    def _format(self, jvm: list[str], props: Path, password: str) -> None:
        self.echo("kafka: formatting storage")
        tool = [*jvm, "kafka.tools.StorageTool"]
        cluster_id = (
            self._run([*tool, "random-uuid"], "generate a cluster id").strip().splitlines()[-1]
        )
        # The SCRAM login of the secure listener lives in the cluster's metadata.
        login = f"name={STACK_USER},password={password}"
        scram = [f"--add-scram=SCRAM-SHA-{bits}=[{login}]" for bits in (512, 256)]
        self._run(
            [*tool, "format", "-t", cluster_id, "-c", str(props), *scram], "format its storage"
        )

    def _run(self, argv: list[str], what: str) -> str:
        done = subprocess.run(
            argv, cwd=self.home, env=self.base_env(), capture_output=True, text=True, check=False
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            log.write(done.stdout + done.stderr)
        if done.returncode != 0 or not done.stdout.strip():
            output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            msg = f"kafka: could not {what} (exit {done.returncode}):\n{output}"
            raise StackError(msg)
        return done.stdout

    def is_ready(self) -> bool:
        """Probe whether the broker answers a metadata request."""
        return accepts(self.port) and metadata_answers(self.address)


def metadata_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """Whether a Kafka admin client can fetch the topic list from `bootstrap`.

    Runs in a thread with its own event loop, so it also works when called from
    code that already runs an asyncio loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_probe_in_new_loop, bootstrap, timeout).result()


def _probe_in_new_loop(bootstrap: str, timeout: float) -> bool:
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    # While the broker boots, aiokafka logs every refused connection as an error.
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_probe(bootstrap, timeout))
    finally:
        aiokafka_log.setLevel(level)


async def _probe(bootstrap: str, wait_s: float) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient  # heavy, and rarely needed

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        async with asyncio.timeout(wait_s):
            await admin.start()
            await admin.list_topics()
        return True
    except Exception:  # any failure just means "not ready yet"
        return False
    finally:
        # Closing a half-started client may fail too.
        with contextlib.suppress(Exception):
            await admin.close()
