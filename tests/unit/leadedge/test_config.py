from __future__ import annotations

import pytest

from leadedge.config import Settings, bootstrap_servers, get_settings
from leadedge.exceptions import ConfigError


def test_defaults_match_the_local_stack() -> None:
    settings = Settings()
    assert settings.broker == "kafka://127.0.0.1:9092"
    assert settings.es_url == "http://127.0.0.1:9200"
    assert settings.s3_endpoint == "http://127.0.0.1:9000"
    assert (settings.requests_topic, settings.merged_topic, settings.dlq_topic) == (
        "requests",
        "merged-requests",
        "requests-dlq",
    )
    assert settings.partitions == 8
    assert settings.web_port == 6066


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADEDGE_PARTITIONS", "many")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="LEADEDGE_PARTITIONS"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_counter_fields_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADEDGE_COUNTER_FIELDS", "clicks, impressions")
    assert Settings().counter_fields == ("clicks", "impressions")


def test_broker_urls_become_bootstrap_servers() -> None:
    assert bootstrap_servers("kafka://a:9092;kafka://b:9093") == "a:9092,b:9093"


def test_no_s3_key_pair_by_default_so_boto3_uses_its_own_credential_chain() -> None:
    from leadedge.config import s3_keys

    assert s3_keys(Settings()) == (None, None)
    keys = Settings(s3_access_key_id="id", s3_secret_access_key="secret")  # type: ignore[arg-type]
    assert s3_keys(keys) == ("id", "secret")


def test_an_s3_key_without_its_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADEDGE_S3_ACCESS_KEY_ID", "id")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="LEADEDGE_S3_SECRET_ACCESS_KEY"):
            get_settings()
    finally:
        get_settings.cache_clear()
