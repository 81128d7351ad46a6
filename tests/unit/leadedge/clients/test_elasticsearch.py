"""Every Elasticsearch client logs in alike, from one set of settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from leadedge.clients.elasticsearch import ElasticsearchConnection, as_es_connection
from leadedge.config import Settings
from leadedge.exceptions import ConfigError
from tests.unit.leadedge.settings_env import settings_with


def test_an_open_cluster_by_url_by_default() -> None:
    connection = ElasticsearchConnection.from_settings(Settings())
    assert connection.client_options() == {"hosts": ["http://127.0.0.1:9200"]}
    assert as_es_connection("http://es:9200").client_options() == {"hosts": ["http://es:9200"]}


def test_a_user_and_password_with_a_ca_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    settings = settings_with(
        monkeypatch,
        es_url="https://es:9200",
        es_username="leadedge",
        es_password="es-secret-1",
        es_ca_file=str(ca),
    )
    connection = ElasticsearchConnection.from_settings(settings)
    assert connection.client_options() == {
        "hosts": ["https://es:9200"],
        "basic_auth": ("leadedge", "es-secret-1"),
        "ca_certs": str(ca),
    }
    assert "es-secret-1" not in repr(connection) + repr(settings)


def test_an_api_key_on_elastic_cloud_with_a_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        monkeypatch,
        es_cloud_id="deployment:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm",
        es_api_key="a2V5LWlkOmtleS1zZWNyZXQ=",
        es_ssl_fingerprint="AB:CD",
    )
    options = ElasticsearchConnection.from_settings(settings).client_options()
    assert "hosts" not in options
    assert options["cloud_id"].startswith("deployment:")
    assert options["api_key"] == "a2V5LWlkOmtleS1zZWNyZXQ="
    assert options["ssl_assert_fingerprint"] == "AB:CD"
    assert ElasticsearchConnection.from_settings(settings).where.startswith("cloud id deployment:")


def test_a_user_and_password_in_the_url_are_not_shown_in_messages() -> None:
    assert ElasticsearchConnection("https://u:pw@es:9200/").where == "https://es:9200/"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"es_username": "u"}, "LEADEDGE_ES_PASSWORD"),
        ({"es_username": "u", "es_password": "p", "es_api_key": "k"}, "LEADEDGE_ES_API_KEY"),
        ({"es_ca_file": "/no/such/ca.pem"}, "LEADEDGE_ES_CA_FILE"),
    ],
)
def test_incomplete_elasticsearch_logins_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        settings_with(monkeypatch, **variables)


def api_error(kind: type[Exception], status: int) -> Exception:
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "es", 9200))
    return kind("refused", meta, {"error": "refused"})  # type: ignore[call-arg]


def test_a_refused_login_or_an_untrusted_certificate_names_what_to_check() -> None:
    from elasticsearch.exceptions import (
        AuthenticationException,
        AuthorizationException,
        ConnectionError,
        SSLError,
    )

    from leadedge.clients.elasticsearch import elasticsearch_problem

    connection = ElasticsearchConnection("https://es:9200")
    refused = api_error(AuthenticationException, 401)
    # Each login names its own variables; none at all names both ways to log in.
    logins = {
        "LEADEDGE_ES_API_KEY": ElasticsearchConnection(
            "https://es:9200", api_key=SecretStr("k"), username="u", password=SecretStr("p")
        ),
        "LEADEDGE_ES_PASSWORD": ElasticsearchConnection(
            "https://es:9200", username="u", password=SecretStr("p")
        ),
    }
    for variable, login in logins.items():
        problem = elasticsearch_problem(refused, login)
        assert problem is not None and variable in str(problem)
    assert "LEADEDGE_ES_USERNAME" not in str(
        elasticsearch_problem(refused, logins["LEADEDGE_ES_API_KEY"])
    )
    anonymous = str(elasticsearch_problem(refused, connection))
    assert "requires a login" in anonymous and "LEADEDGE_ES_API_KEY" in anonymous
    # Logged in without the cluster's monitor privilege: fine for the sinks.
    assert elasticsearch_problem(api_error(AuthorizationException, 403), connection) is None
    untrusted = elasticsearch_problem(SSLError("certificate verify failed"), connection)
    assert untrusted is not None and "LEADEDGE_ES_CA_FILE" in str(untrusted)
    assert elasticsearch_problem(ConnectionError("refused"), connection) is None
