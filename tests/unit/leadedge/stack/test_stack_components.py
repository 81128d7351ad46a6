"""Config rendering, download output condensing, unpacking and tool checks."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from leadedge.exceptions import StackError
from leadedge.stack import tools
from leadedge.stack.elasticsearch import Elasticsearch, extract_zip
from leadedge.stack.kafka import render_server_properties


def test_server_properties() -> None:
    text = render_server_properties(
        Path("/state/kafka/data"), keystore=Path("/state/secure/kafka-keystore.pem"), password="pw"
    )
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["log.dirs"] == "/state/kafka/data"
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SECURE://127.0.0.1:9094"
    )
    assert props["listener.security.protocol.map"].endswith("SECURE:SASL_SSL")
    assert props["listener.name.secure.ssl.keystore.location"] == (
        "/state/secure/kafka-keystore.pem"
    )
    assert 'user_leadedge="pw"' in props["listener.name.secure.plain.sasl.jaas.config"]
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"


def test_packaged_data_files() -> None:
    from importlib.resources import files

    pom = files("leadedge.stack").joinpath("kafka-pom.xml").read_text()
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<packaging>pom</packaging>" in pom
    assert "STDOUT" in files("leadedge.stack").joinpath("kafka-log4j2.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "size"), [("2.1 MB", 2.1e6), ("683 kB", 683e3), ("12 B", 12), ("x", 0)]
)
def test_parse_size(text: str, size: float) -> None:
    assert tools.parse_size(text) == pytest.approx(size)


def test_download_report_condenses() -> None:
    lines: list[str] = []
    report = tools.DownloadReport("kafka", lines.append)
    base = "[INFO] Downloaded from central: https://repo/maven2/org/x"
    for i in range(120):
        report.feed(f"{base}/small-{i}.pom (2.0 kB at 40 kB/s)\n")
    report.feed(f"{base}/kafka-clients-4.1.1.jar (9.8 MB at 19 MB/s)\n")
    report.feed("[INFO] Downloading from central: https://repo/maven2/org/es/es-8.19.7.zip\n")
    report.feed("[INFO] Building kafka-runtime 1\n")
    assert lines == [
        "kafka: 50 files downloaded (0.1 MB) so far …",
        "kafka: 100 files downloaded (0.2 MB) so far …",
        "kafka: downloaded kafka-clients-4.1.1.jar (9.8 MB at 19 MB/s)",
        "kafka: downloading es-8.19.7.zip …",
    ]
    assert report.summary() == "121 files downloaded (10.0 MB)"


def test_missing_java_and_mvn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="OpenJDK 17"):
        tools.require_java()
    with pytest.raises(StackError, match=r"Maven 3\.8"):
        tools.require_mvn()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="Java 11"):
        tools.require_java()


def test_java_home_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    (tmp_path / "jdk" / "bin" / "java").touch()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").symlink_to(tmp_path / "jdk" / "bin" / "java")
    assert tools.java_home(tmp_path / "bin" / "java") == (tmp_path / "jdk").resolve()


def test_extract_zip_keeps_executable_bits(tmp_path: Path) -> None:
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        script = zipfile.ZipInfo("es/bin/elasticsearch")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(script, "#!/bin/sh\n")
        conf = zipfile.ZipInfo("es/config/jvm.options")
        conf.external_attr = (stat.S_IFREG | 0o660) << 16
        zf.writestr(conf, "-Xms1g\n")
    extract_zip(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/es/bin/elasticsearch").stat().st_mode) == 0o755
    # Readable by all, so a service user can run the shared copy.
    assert stat.S_IMODE((tmp_path / "out/es/config/jvm.options").stat().st_mode) == 0o664


@pytest.mark.skipif(os.geteuid() != 0, reason="the relocation only happens when root runs it")
def test_elasticsearch_files_move_out_of_a_private_state_dir_when_root_runs_it(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    component = Elasticsearch(private / "state", tmp_path / "cache", echo=lambda _: None)
    assert component.home.parent == Path(tempfile.gettempdir())
    assert component.home.name.startswith("leadedge-elasticsearch-")


def test_the_local_ca_signs_a_server_certificate_clients_can_verify(tmp_path: Path) -> None:
    import ssl

    from leadedge.stack.tls import LocalAuthority, stack_password

    authority = LocalAuthority(tmp_path)
    files = authority.server("kafka")
    assert authority.server("kafka") == files  # made once
    # A real handshake over memory: the client trusts only the stack's CA.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(files.certificate), str(files.key))
    client = ssl.create_default_context(cafile=str(authority.ca_file))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, from_client, server_hostname="127.0.0.1")
    tls_server = server.wrap_bio(to_server, from_server, server_side=True)
    for _ in range(10):
        for side in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        to_server.write(from_client.read())
        to_client.write(from_server.read())
    assert tls_client.version() is not None  # the handshake completed, certificate verified
    password = stack_password(tmp_path)
    assert len(password) >= 20 and stack_password(tmp_path) == password
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"
