"""Several hosts of one cluster: parsing (pure), and the clients of both engines built on it."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import pytest
from click.testing import CliRunner

from bridge import hosts
from bridge.cli import main
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.errors import BadInput
from bridge.nodes.process import port_free


def test_a_comma_separated_list_gives_each_node():
    assert hosts.parse_hosts(" http://a:9200, http://b:9201 ,http://c:9202") == [
        "http://a:9200",
        "http://b:9201",
        "http://c:9202",
    ]


def test_a_single_url_is_one_host_and_a_python_list_is_several():
    assert hosts.parse_hosts("http://127.0.0.1:9200") == ["http://127.0.0.1:9200"]
    settings = ConnectionSettings(url=["http://a:9200", "http://b:9200"])
    assert settings.url == "http://a:9200,http://b:9200"
    assert settings.hosts == ["http://a:9200", "http://b:9200"]


def test_path_prefixes_and_ipv6_literals_are_kept():
    listed = "https://[::1]:9200/search,https://10.0.0.2:9200/search"
    assert hosts.parse_hosts(listed) == [
        "https://[::1]:9200/search",
        "https://10.0.0.2:9200/search",
    ]
    assert hosts.uses_tls(listed)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://a:9200,https://b:9200", "mixes http and https"),
        ("http://a:9200,,http://b:9200", "empty entry"),
        ("http://a:9200,", "empty entry"),
        ("http://a:port", "no valid host and port"),
        ("http://a:99999", "no valid host and port"),
        ("http://[::1:9200", "no valid host and port"),
        ("a:9200", "is not a node URL"),
        ("ftp://a:21", "is not a node URL"),
        ("http://a:9200,http://a:9200", "names a node twice"),
        ("", "is empty"),
    ],
)
def test_a_bad_list_is_one_sentence(url, words):
    with pytest.raises(BadInput) as caught:
        _ = ConnectionSettings(url=url).hosts
    message = caught.value.message
    assert words in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_passwords_never_reach_messages():
    settings = ConnectionSettings(url="http://u:s3cret@a:9200,https://u:s3cret@[::1]:9200/p")
    assert "s3cret" not in settings.safe_url
    assert settings.safe_url == "http://a:9200,https://[::1]:9200/p"
    with pytest.raises(BadInput) as caught:
        _ = settings.hosts  # mixed schemes: the sentence shows the list, without the password
    assert "s3cret" not in caught.value.message
    assert hosts.has_password("http://a:9200,http://u:p@b:9200")
    assert not hosts.has_password("http://a:9200,http://b:9200")


def test_the_opensearch_client_gets_every_host_and_no_sniffing():
    from bridge.backends.opensearch import OPENSEARCH

    settings = ConnectionSettings(url="http://a:9200,http://[::1]:9201/prefix")
    client = OPENSEARCH.client(settings)
    connections = client.transport.connection_pool.connections
    assert sorted(c.host for c in connections) == ["http://[::1]:9201", "http://a:9200"]
    assert {c.url_prefix for c in connections} == {"", "/prefix"}
    assert client.transport.sniff_on_start is False


def test_the_elasticsearch_client_gets_every_host():
    from bridge.backends.elasticsearch import ELASTICSEARCH

    settings = ConnectionSettings(url="http://a:9200,http://[::1]:9201/prefix")
    client = ELASTICSEARCH.client(settings)
    nodes = sorted(
        (n.config.host, n.config.port, n.config.path_prefix)
        for n in client.transport.node_pool.all()
    )
    assert nodes == [("::1", 9201, "/prefix"), ("a", 9200, "")]


# ---- against a real node: a dead first host costs nothing ---------------------------------------

DEAD_PORT = int(os.environ.get("DOTBRIDGE_TEST_DEAD_PORT", "9349"))  # nothing listens there


def _timed(settings: ConnectionSettings, index: str, rounds: int = 20) -> float:
    """Median seconds of connect + a count, `rounds` times (a new client each time)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        client = connect(settings)
        client.count(index=index)
        times.append(time.perf_counter() - start)
        client.close()
    return statistics.median(times)


@pytest.mark.integration
def test_a_dead_first_host_answers_as_fast_as_a_healthy_list(opensearch_settings, index_name):
    assert port_free(DEAD_PORT), f"port {DEAD_PORT} must be closed for this test"
    client = connect(opensearch_settings)
    client.indices.create(index=index_name)
    client.index(index=index_name, id="1", body={"t": "x"}, refresh=True)
    dead = f"http://127.0.0.1:{DEAD_PORT}"
    healthy = _timed(opensearch_settings, index_name)
    listed = dataclasses.replace(opensearch_settings, url=f"{dead},{opensearch_settings.url}")
    with_dead = _timed(listed, index_name)
    assert connect(listed).count(index=index_name)["count"] == 1
    # A refused connection on loopback costs well under a millisecond; 50 ms of slack for noise.
    assert with_dead < healthy + 0.05, (with_dead, healthy)


@pytest.mark.integration
def test_the_cli_takes_a_list_with_a_dead_first_host(opensearch_settings):
    dead = f"http://127.0.0.1:{DEAD_PORT}"
    runner = CliRunner()
    start = time.perf_counter()
    result = runner.invoke(
        main, ["opensearch", "status", "--url", f"{dead},{opensearch_settings.url}"]
    )
    took = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert "health" in result.output and "node " in result.output
    assert took < 5, took
    bad = runner.invoke(main, ["opensearch", "status", "--url", f"{dead},,x"])
    assert bad.exit_code != 0
    assert "has an empty entry" in bad.output and "Traceback" not in bad.output
