"""The one settings class: every `LEADEDGE_*` variable, read once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from leadedge.exceptions import ConfigError

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Configuration of a leadedge worker and its tools.

    Defaults match the local stack (`leadedge stack up`), so a worker started with no
    variables at all talks to it.
    """

    # `hide_input_in_errors`: a refused value may be a password; errors name, never show.
    model_config = SettingsConfigDict(
        env_prefix="LEADEDGE_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # Kafka and the Faust app
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "leadedge"
    requests_topic: str = "requests"
    merged_topic: str = "merged-requests"
    dlq_topic: str = "requests-dlq"
    partitions: int = Field(8, ge=1)
    replication_factor: int = Field(1, ge=1)
    store: str = "rocksdb://"
    # How every Kafka client connects (see `leadedge.clients.kafka`): PLAINTEXT, SSL,
    # SASL_PLAINTEXT or SASL_SSL; SASL with PLAIN or SCRAM-SHA-256/512; TLS trusting the
    # CA file (else the system's), with a client certificate and key when both are set.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # How long a worker that died without leaving (kill -9, power loss) keeps its
    # partitions before the group hands them to the others.
    session_timeout_s: float = Field(10.0, ge=1.0)
    web_port: int = Field(6066, ge=1, le=65535)
    # The address other workers use to reach this one (forwarded lookups) ...
    web_host: str = "127.0.0.1"
    # ... and the interface the web server listens on: this machine only, unless set
    # (e.g. 0.0.0.0 in a container).
    web_bind: str = "127.0.0.1"
    # A client has this long to send a request's headers (from connecting, or after the
    # previous answer on a kept-alive connection) and then its body; an idle kept-alive
    # connection is closed after it too.
    web_read_timeout_s: float = Field(10.0, gt=0)
    # Open connections served at once; the next ones get 503 and are closed.
    web_max_connections: int = Field(256, ge=1)
    # Requests served on one kept-alive connection before the answer says `Connection: close`.
    web_max_requests_per_connection: int = Field(1000, ge=1)
    # How long a lookup forwarded to the worker that owns the id may take before 503.
    web_forward_timeout_s: float = Field(3.0, gt=0)
    # How long a stop (SIGTERM) may take before the process exits regardless.
    shutdown_timeout_s: float = Field(30.0, gt=0)

    # Merge rules and enrichment
    ipaddress_field: str = "ipaddress"
    useragent_field: str = "useragent"
    # Empty: every field may take increments (DESIGN rule 7 when set).
    counter_fields: Annotated[tuple[str, ...], NoDecode] = ()
    geoip_db: Path | None = None
    max_event_bytes: int = Field(64 * 1024, ge=256)
    # Per request: event_ids remembered for de-duplication, events kept for its history.
    max_event_ids: int = Field(1000, ge=1)
    # A request's whole state (merged fields, newest history, event ids) in bytes; an
    # event that would take it past this is refused (state_too_large). At most 880 KiB:
    # the state must stay under Kafka's 1 MiB record with what it may grow by between
    # two measures (leadedge.rules.processing).
    max_state_bytes: int = Field(768 * 1024, ge=64 * 1024, le=880 * 1024)
    history_length: int = Field(1000, ge=1)

    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    # How every Elasticsearch client logs in (see `leadedge.clients.elasticsearch`): an
    # Elastic Cloud id instead of the URL; a user and password, or an API key (base64 "id:key");
    # TLS trusting a CA file or a certificate's SHA-256 fingerprint (else the system's).
    es_cloud_id: str | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_api_key: SecretStr | None = None
    es_ca_file: Path | None = None
    es_ssl_fingerprint: str | None = None
    es_alias: str = "leadedge-requests"
    es_batch_size: int = Field(500, ge=1)
    es_linger_ms: int = Field(50, ge=0)
    # How long an indexed merged request waits to become searchable: a quarter second
    # keeps produce-to-searchable under a second at low rates, for about 1.5 times the
    # Elasticsearch CPU of its 1 s default (BENCHMARKS.md, freshness).
    es_refresh_interval: str = "250ms"
    # Primary shards of each requests index (fixed at its creation: a change applies from
    # the next `leadedge reindex`), and replicas of the requests and stats indices: when
    # set, applied to the existing ones at start; unset, new indices get none (the local
    # stack's single node takes none) and existing ones keep what they have.
    es_shards: int = Field(1, ge=1, le=1024)
    es_replicas: int | None = Field(None, ge=0)

    # The batch engine (leadedge/engine): how long a merged record may wait before it is
    # written out, and how many records may wait at most before intake pauses for a flush.
    flush_interval_ms: int = Field(100, ge=1)
    flush_max_records: int = Field(20_000, ge=1)
    # How often the per-minute partial counts changed since the last send are sent on
    # (a full snapshot per window: the interval bounds how stale a stats window is).
    stats_send_interval_ms: int = Field(1000, ge=1)

    # S3 archive
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_bucket: str = "leadedge"
    s3_prefix: str = "raw"
    s3_region: str = "us-east-1"
    # Unset: boto3's own chain (AWS_* variables, a profile, an instance or task role).
    # The local stack's keys are passed by `leadedge demo`, the tests and the benchmarks.
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # e.g. "AES256" or "aws:kms"; unset: the bucket's default encryption.
    s3_server_side_encryption: str | None = None
    archive_max_bytes: int = Field(8 * MIB, ge=1024)
    archive_max_age_s: float = Field(60.0, ge=1.0)

    # HTTP
    api_keys_file: Path | None = None
    # How long `POST /requests` waits for Kafka to acknowledge its events before 503.
    collector_timeout_s: float = Field(4.0, gt=0)

    # Local stack tooling (`leadedge stack …`)
    stack_dir: Path = Path(".stack")
    # Unpacked downloads (Maven keeps the downloads themselves in ~/.m2). Kept beside the
    # state rather than in the home directory: Elasticsearch runs as an unprivileged user
    # when root starts it, and a root home directory is closed to other users.
    stack_cache: Path = Path(".stack/cache")

    # Per-minute reporting aggregates (agents/stats.py). The partial counts of each
    # window travel on `{stats_topic}-partials`, an internal topic keyed like the totals.
    stats_topic: str = "request-stats"
    stats_alias: str = "leadedge-stats"
    # How long after a window's end its events still count (by the partition's event time).
    stats_lateness_s: int = Field(300, ge=0)
    # How long a window's totals stay in the worker's table and in the stats topic.
    stats_retention_s: int = Field(7 * 24 * 3600, ge=3600)

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        # Said at start, naming the variables, rather than as a failed handshake later.
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            msg = (
                f"LEADEDGE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "LEADEDGE_KAFKA_SASL_USERNAME and LEADEDGE_KAFKA_SASL_PASSWORD"
            )
            raise ValueError(msg)
        if (self.es_username is None) != (self.es_password is None):
            msg = "LEADEDGE_ES_USERNAME and LEADEDGE_ES_PASSWORD go together"
            raise ValueError(msg)
        if self.es_username is not None and self.es_api_key is not None:
            msg = "set LEADEDGE_ES_API_KEY or LEADEDGE_ES_USERNAME/LEADEDGE_ES_PASSWORD, not both"
            raise ValueError(msg)
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            msg = "LEADEDGE_S3_ACCESS_KEY_ID and LEADEDGE_S3_SECRET_ACCESS_KEY go together"
            raise ValueError(msg)
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            msg = "LEADEDGE_KAFKA_SSL_CERTFILE and LEADEDGE_KAFKA_SSL_KEYFILE go together"
            raise ValueError(msg)
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "es_ca_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                msg = f"LEADEDGE_{name.upper()}: no file at {path}"
                raise ValueError(msg)
        return self

    @field_validator("counter_fields", mode="before")
    @classmethod
    def _split_counter_fields(cls, value: object) -> object:
        # A comma-separated list reads better in an environment variable than JSON.
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once; a bad value raises `ConfigError` naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        msg = f"invalid configuration: {problems}"
        raise ConfigError(msg) from exc


def s3_keys(settings: Settings) -> tuple[str | None, str | None]:
    """The S3 key pair, or (None, None): boto3 then looks for credentials in its own chain."""
    secret = settings.s3_secret_access_key
    return settings.s3_access_key_id, secret.get_secret_value() if secret else None


def _problem(location: tuple[int | str, ...], message: str) -> str:
    if not location:  # a rule over several variables, which its message names
        return message.removeprefix("Value error, ")
    return f"LEADEDGE_{'_'.join(str(part) for part in location).upper()}: {message}"


def bootstrap_servers(broker: str) -> str:
    """`kafka://host:port;kafka://host2:port` (Faust's form) as aiokafka's `host:port,…`."""
    hosts = (part.strip() for part in broker.replace(";", ",").split(","))
    return ",".join(host.removeprefix("kafka://") for host in hosts if host)
