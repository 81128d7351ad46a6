"""How every Elasticsearch client leadedge makes connects: URL or Cloud id, login, TLS.

One `ElasticsearchConnection`, built from the settings, makes the clients of the sinks
(merged requests, stats), the report page and `reindex`, so they all authenticate
alike: a user and password, or an API key; TLS trusting a CA file or a certificate
fingerprint (else the system's CAs). Secrets stay `SecretStr` until a client is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import AsyncElasticsearch
from elasticsearch.exceptions import AuthenticationException, AuthorizationException, SSLError
from pydantic import SecretStr

from leadedge.config import Settings
from leadedge.exceptions import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ElasticsearchConnection:
    """Where Elasticsearch is and how to authenticate to it."""

    url: str | None = "http://127.0.0.1:9200"
    cloud_id: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    api_key: SecretStr | None = field(default=None, repr=False)
    ca_file: Path | None = None
    fingerprint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticsearchConnection:
        """The connection the `LEADEDGE_ES_*` variables describe."""
        return cls(
            url=None if settings.es_cloud_id else settings.es_url,
            cloud_id=settings.es_cloud_id,
            username=settings.es_username,
            password=settings.es_password,
            api_key=settings.es_api_key,
            ca_file=settings.es_ca_file,
            fingerprint=settings.es_ssl_fingerprint,
        )

    @property
    def where(self) -> str:
        """The URL (without a user and password in it) or Cloud id, for messages."""
        if self.url is None:
            return f"cloud id {self.cloud_id}"
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of `AsyncElasticsearch` for this connection."""
        options: dict[str, Any] = {}
        if self.cloud_id:
            options["cloud_id"] = self.cloud_id
        else:
            options["hosts"] = [self.url]
        if self.api_key is not None:
            options["api_key"] = self.api_key.get_secret_value()
        elif self.username is not None and self.password is not None:
            options["basic_auth"] = (self.username, self.password.get_secret_value())
        if self.ca_file is not None:
            options["ca_certs"] = str(self.ca_file)
        if self.fingerprint:
            options["ssl_assert_fingerprint"] = self.fingerprint
        return options

    def client(self, **options: Any) -> AsyncElasticsearch:
        """A new async client; `options` add to or override the connection's."""
        return AsyncElasticsearch(**{**self.client_options(), **options})


def as_es_connection(target: str | ElasticsearchConnection) -> ElasticsearchConnection:
    """A connection, from itself or from the URL of an open cluster."""
    return (
        target if isinstance(target, ElasticsearchConnection) else ElasticsearchConnection(target)
    )


def elasticsearch_problem(
    exc: BaseException, connection: ElasticsearchConnection
) -> ConfigError | None:
    """A clear error naming the variables to check, for a failure that is one of settings.

    None for anything else (Elasticsearch being down is not a configuration problem).
    """
    where = connection.where
    if isinstance(exc, AuthenticationException):
        # Name the variables of the login that was tried (an API key wins over a user).
        if connection.api_key is not None:
            return ConfigError(f"Elasticsearch ({where}) refused the API key LEADEDGE_ES_API_KEY")
        if connection.username is not None:
            return ConfigError(
                f"Elasticsearch ({where}) refused the login: check LEADEDGE_ES_USERNAME "
                "and LEADEDGE_ES_PASSWORD"
            )
        return ConfigError(
            f"Elasticsearch ({where}) requires a login: set LEADEDGE_ES_API_KEY, or "
            "LEADEDGE_ES_USERNAME and LEADEDGE_ES_PASSWORD"
        )
    if isinstance(exc, SSLError):
        return ConfigError(
            f"TLS with Elasticsearch ({where}) failed ({exc.message}): check LEADEDGE_ES_CA_FILE "
            "or LEADEDGE_ES_SSL_FINGERPRINT"
        )
    return None


async def check_elasticsearch(connection: ElasticsearchConnection, timeout_s: float = 10.0) -> None:
    """Ask Elasticsearch for its health once; raise `ConfigError` if the login is refused.

    The sinks retry a refused login for ever, as they retry an outage: a worker would
    wait on a wrong API key without saying why.
    """
    client = connection.client(request_timeout=timeout_s, max_retries=0)
    try:
        await client.cluster.health()
    except AuthorizationException:
        # Logged in, without the cluster `monitor` privilege: the sinks need only their
        # indices, so a key limited to them is fine.
        log.info("Elasticsearch (%s): login accepted", connection.where)
    except Exception as exc:
        problem = elasticsearch_problem(exc, connection)
        if problem is not None:
            raise problem from None
    finally:
        await client.close()
