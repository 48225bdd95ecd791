"""Connection settings: from env and flags, TLS on by default, and no password ever shown."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import connect
from bridge.config import DEFAULT_URL, ConnectionSettings
from bridge.errors import ConnectionFailed


def test_defaults_and_env(monkeypatch):
    for var in ("OPENSEARCH_URL", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD", "OPENSEARCH_CA_CERTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENSEARCH_VERIFY_CERTS", raising=False)
    settings = ConnectionSettings.from_env()
    assert settings.url == DEFAULT_URL and settings.verify_certs
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example:9200")
    monkeypatch.setenv("OPENSEARCH_USER", "admin")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("OPENSEARCH_CA_CERTS", "/etc/ca.pem")
    settings = ConnectionSettings.from_env(user="other")
    assert (settings.url, settings.user, settings.password, settings.ca_certs) == (
        "https://search.example:9200",
        "other",
        "s3cret-pw",
        "/etc/ca.pem",
    )
    assert settings.verify_certs
    assert "s3cret-pw" not in repr(settings)


def test_safe_url_drops_credentials():
    settings = ConnectionSettings(url="https://admin:s3cret-pw@search.example:9200/x")
    assert settings.safe_url == "https://search.example:9200/x"


def test_connection_error_names_the_url_not_the_password():
    settings = ConnectionSettings(url="http://admin:s3cret-pw@127.0.0.1:9", password="s3cret-pw")
    with pytest.raises(ConnectionFailed) as err:
        connect(settings)
    assert "127.0.0.1:9" in err.value.message and "s3cret-pw" not in err.value.message


def test_cli_never_prints_the_password():
    env = {"OPENSEARCH_URL": "http://127.0.0.1:9", "OPENSEARCH_PASSWORD": "s3cret-pw"}
    result = CliRunner().invoke(main, ["opensearch", "status", "--user", "admin"], env=env)
    assert result.exit_code == 1
    assert "No OpenSearch answers at http://127.0.0.1:9" in result.output
    assert "s3cret-pw" not in result.output
    help_text = CliRunner().invoke(main, ["search", "--help"], env=env).output
    assert "s3cret-pw" not in help_text
