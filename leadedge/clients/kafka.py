"""How every Kafka client leadedge makes connects: servers, security protocol, SASL, TLS.

One `KafkaConnection`, built from the settings, gives the options of every aiokafka
client (the collector's producer, the archive's consumer, `send`, `replay`, `reindex`,
topic administration) and the Faust app's broker credentials, so they all connect alike.
The password stays a `SecretStr` until a client is made: it is in no repr and no log.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import errors as kafka_errors
from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from leadedge.config import Settings, bootstrap_servers
from leadedge.exceptions import ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        """The connection the `LEADEDGE_BROKER` and `LEADEDGE_KAFKA_*` variables describe."""
        protocol = settings.kafka_security_protocol
        context = None
        if protocol in ("SSL", "SASL_SSL"):
            context = tls_context(
                settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
            )
        return cls(
            bootstrap_servers=bootstrap_servers(settings.broker),
            security_protocol=protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_context=context,
        )

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with a user name and password."""
        return self.security_protocol.startswith("SASL_")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    def faust_credentials(self) -> CredentialsT | None:
        """The Faust app's `broker_credentials`: the same protocol, user and TLS."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                ssl_context=self.ssl_context,
                mechanism=self.sasl_mechanism,
            )
        if self.ssl_context is not None:
            return SSLCredentials(self.ssl_context)
        return None


def as_connection(target: str | KafkaConnection) -> KafkaConnection:
    """A connection, from itself or from `host:port,…` of an open (PLAINTEXT) cluster."""
    if isinstance(target, KafkaConnection):
        return target
    return KafkaConnection(bootstrap_servers(target))


def tls_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext:
    """Verifying the brokers against `cafile` (else the system's CAs), with a client key."""
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(cafile) if cafile else None,
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
        )
    except (OSError, ssl.SSLError) as exc:
        msg = (
            "LEADEDGE_KAFKA_SSL_CAFILE / LEADEDGE_KAFKA_SSL_CERTFILE / LEADEDGE_KAFKA_SSL_KEYFILE "
            f"cannot be loaded: {exc}"
        )
        raise ConfigError(msg) from exc
    return context


def connection_problem(exc: BaseException, connection: KafkaConnection) -> ConfigError | None:
    """A clear error naming the variables to check, for a failure that is one of settings.

    None for anything else (a broker that is down is not a configuration problem).
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SASL_REFUSALS):
            return ConfigError(
                f"Kafka refused the SASL {connection.sasl_mechanism} login of user "
                f"{connection.sasl_username!r}: check LEADEDGE_KAFKA_SASL_USERNAME, "
                "LEADEDGE_KAFKA_SASL_PASSWORD and LEADEDGE_KAFKA_SASL_MECHANISM"
            )
        if isinstance(seen, ssl.SSLCertVerificationError):
            return ConfigError(
                f"the Kafka brokers' certificate is not trusted "
                f"({getattr(seen, 'verify_message', None) or seen}): "
                "check LEADEDGE_KAFKA_SSL_CAFILE"
            )
        if isinstance(seen, ssl.SSLError):
            return ConfigError(
                f"TLS with the Kafka brokers failed ({seen}): check "
                "LEADEDGE_KAFKA_SECURITY_PROTOCOL and LEADEDGE_KAFKA_SSL_*"
            )
        seen = seen.__cause__ or seen.__context__
    return None


SASL_REFUSALS = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)


async def check_connection(connection: KafkaConnection, timeout_s: float = 20.0) -> None:
    """Log in to a broker once; raise `ConfigError` naming the variables if refused.

    aiokafka's clients log a refused login and keep retrying (their error says only
    "Unable to bootstrap"): a worker would wait for ever on a wrong password. A broker
    that cannot be reached is not a settings problem: that is left to the clients.
    """
    from aiokafka.conn import create_conn

    options = connection.client_options()
    for host in connection.bootstrap_servers.split(","):
        name, _, port = host.strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    name,
                    int(port),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=connection.security_protocol,
                    sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                )
        except (OSError, kafka_errors.KafkaError, TimeoutError) as exc:
            problem = connection_problem(exc, connection)
            if problem is not None:
                raise problem from None
            continue
        conn.close()
        return
