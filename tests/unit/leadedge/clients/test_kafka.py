"""Every Kafka client connects alike, from one set of settings; secrets stay out of reprs."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import SecretStr

from leadedge.clients.kafka import KafkaConnection, as_connection, connection_problem
from leadedge.config import Settings
from leadedge.exceptions import ConfigError
from tests.unit.leadedge.settings_env import settings_with

CA = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def test_plaintext_by_default_with_faust_brokers_as_bootstrap_servers() -> None:
    connection = KafkaConnection.from_settings(Settings(broker="kafka://a:9092;kafka://b:9092"))
    assert connection.client_options() == {
        "bootstrap_servers": "a:9092,b:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert connection.faust_credentials() is None
    assert as_connection("kafka://a:9092").bootstrap_servers == "a:9092"


def test_sasl_ssl_gives_every_client_the_login_and_faust_the_same_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not CA.is_file():
        pytest.skip("no system CA bundle")
    settings = settings_with(
        monkeypatch,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret-value",
        kafka_ssl_cafile=str(CA),
    )
    connection = KafkaConnection.from_settings(settings)
    options = connection.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    login = (options["sasl_plain_username"], options["sasl_plain_password"])
    assert login == ("svc", "s3cret-value")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = connection.faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert "s3cret-value" not in repr(connection) + repr(credentials) + repr(settings)


def test_tls_alone_gives_faust_ssl_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CA.is_file():
        pytest.skip("no system CA bundle")
    settings = settings_with(monkeypatch, kafka_security_protocol="SSL", kafka_ssl_cafile=str(CA))
    connection = KafkaConnection.from_settings(settings)
    assert "sasl_mechanism" not in connection.client_options()
    assert isinstance(connection.faust_credentials(), SSLCredentials)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "LEADEDGE_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}, "PASSWORD"),
        ({"kafka_ssl_certfile": str(CA)}, "LEADEDGE_KAFKA_SSL_KEYFILE"),
        ({"kafka_ssl_cafile": "/no/such/ca.pem"}, "LEADEDGE_KAFKA_SSL_CAFILE"),
        ({"kafka_security_protocol": "TLS"}, "LEADEDGE_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "LEADEDGE_KAFKA_SASL_MECHANISM"),
    ],
)
def test_incomplete_or_wrong_security_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        settings_with(monkeypatch, **variables)


def test_a_refused_login_and_an_untrusted_certificate_name_what_to_check() -> None:
    connection = KafkaConnection(
        "b:9096", "SASL_SSL", "SCRAM-SHA-512", "svc", SecretStr("pw-never-shown")
    )
    refused = connection_problem(kafka_errors.SaslAuthenticationFailed("bad"), connection)
    assert refused is not None and "LEADEDGE_KAFKA_SASL_PASSWORD" in str(refused)
    assert "pw-never-shown" not in str(refused)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    problem = connection_problem(untrusted, connection)
    assert problem is not None and "LEADEDGE_KAFKA_SSL_CAFILE" in str(problem)
    assert connection_problem(ConnectionRefusedError(111, "refused"), connection) is None
