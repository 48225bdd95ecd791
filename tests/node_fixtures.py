"""Real nodes for integration tests: a URL from the environment when set, else a local node.

OpenSearch: OPENSEARCH_URL or the embedded node on DOTBRIDGE_TEST_PORT (9250). Elasticsearch:
ELASTICSEARCH_URL or a local node on DOTBRIDGE_TEST_ES_PORT (9251). A secured OpenSearch node
(TLS, users, roles) on DOTBRIDGE_TEST_SECURE_PORT (9252), with certificates and users generated
anew for each test session. Integration tests fail, never skip, when no node can be had.

`engine` runs a test module once per engine (OpenSearch, then Elasticsearch): its client,
settings and backend; `engine_index` is a unique index name on it, deleted afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opensearchpy import OpenSearch

from bridge.backends import Backend, backend_of
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.errors import DotbridgeError
from bridge.nodes import ElasticsearchNode, LocalNode

TEST_PORT = int(os.environ.get("DOTBRIDGE_TEST_PORT", "9250"))
ES_TEST_PORT = int(os.environ.get("DOTBRIDGE_TEST_ES_PORT", "9251"))
SECURE_TEST_PORT = int(os.environ.get("DOTBRIDGE_TEST_SECURE_PORT", "9252"))
TEST_HEAP = os.environ.get("DOTBRIDGE_TEST_HEAP", "1g")


def free_port() -> int:
    """A port the OS says is free on loopback (for a node or gateway of a test's own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def opensearch_settings(request: pytest.FixtureRequest) -> Iterator[ConnectionSettings]:
    node = None
    if os.environ.get("OPENSEARCH_URL"):
        settings = ConnectionSettings.from_env()
    else:
        node = LocalNode(port=TEST_PORT, heap=TEST_HEAP)
        started_here = node.running_pid() is None  # else: a node of an earlier run, left up
        try:
            url = node.start()
        except DotbridgeError as exc:
            pytest.fail(f"no OpenSearch node for the integration tests: {exc.message}")
        settings = ConnectionSettings(url=url)
    try:
        client = connect(settings)
    except DotbridgeError as exc:
        pytest.fail(f"no OpenSearch node for the integration tests: {exc.message}")
    info = client.info()
    plugins = client.cat.plugins(v=True)
    _report(
        request,
        f"OpenSearch {info['version']['number']} at {settings.url}; _cat/plugins:\n{plugins}",
    )
    yield settings
    if node is not None and started_here:
        node.stop()


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Into the log, past pytest's capture: which node the integration tests talk to."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")


@pytest.fixture
def os_client(opensearch_settings: ConnectionSettings) -> OpenSearch:
    return connect(opensearch_settings)


def _unique_name(request: pytest.FixtureRequest) -> str:
    name = f"test-{request.node.name.lower()[:40]}-{uuid.uuid4().hex[:8]}"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


@pytest.fixture
def index_name(os_client: OpenSearch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique index name for one test, deleted afterwards."""
    name = _unique_name(request)
    yield name
    os_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="session")
def elasticsearch_settings(request: pytest.FixtureRequest) -> Iterator[ConnectionSettings]:
    """A real Elasticsearch: ELASTICSEARCH_URL when set, else a local node started once."""
    from elasticsearch import Elasticsearch
    from elasticsearch import TransportError as ESTransportError
    from elasticsearch.exceptions import ApiError

    node = None
    started_here = False
    if os.environ.get("ELASTICSEARCH_URL"):
        settings = ConnectionSettings(url=os.environ["ELASTICSEARCH_URL"])
    else:
        node = ElasticsearchNode(port=ES_TEST_PORT, heap=TEST_HEAP)
        started_here = node.running_pid() is None
        try:
            settings = ConnectionSettings(url=node.start())
        except DotbridgeError as exc:
            pytest.fail(f"no Elasticsearch node for the integration tests: {exc.message}")
    try:
        # Not info(): `GET /` answers 405 on the integration-test distribution.
        health = Elasticsearch(settings.url).cluster.health()
        nodes = Elasticsearch(settings.url).nodes.info(node_id="_all", metric="jvm")
    except (ApiError, ESTransportError) as exc:
        pytest.fail(f"no Elasticsearch answers at {settings.url} for the integration tests: {exc}")
    versions = sorted({(n["version"], n["jvm"]["version"]) for n in nodes["nodes"].values()})
    _report(
        request,
        f"Elasticsearch {versions} (version, java) at {settings.url}; health {health['status']}",
    )
    yield settings
    if node is not None and started_here:
        node.stop()


@pytest.fixture
def es_client(elasticsearch_settings: ConnectionSettings):
    """dotbridge's client of the session's Elasticsearch node (elasticsearch-py's)."""
    return connect(elasticsearch_settings)


@pytest.fixture
def es_index(es_client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique Elasticsearch index name for one test, deleted afterwards."""
    name = _unique_name(request)
    yield name
    es_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="session")
def secure_node(request: pytest.FixtureRequest) -> Iterator[LocalNode]:
    """A secured OpenSearch node with a CA, certificates and users made for this session."""
    node = LocalNode(port=SECURE_TEST_PORT, heap=TEST_HEAP, secure=True)
    try:
        node.stop()  # one left up by an earlier session has that session's secrets
        node.reset()
        node.start(timeout=300)
    except DotbridgeError as exc:
        pytest.fail(f"no secured OpenSearch node for the integration tests: {exc.message}")
    _report(request, f"secured OpenSearch at {node.url}; CA {node.credentials.ca}")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def secure_settings(secure_node: LocalNode) -> ConnectionSettings:
    """The generated admin user's settings for the secured node (CA, user, password)."""
    return secure_node.connection_settings("admin")


@pytest.fixture(scope="session")
def reader_settings(secure_node: LocalNode) -> ConnectionSettings:
    """The generated read-only user's settings for the secured node."""
    return secure_node.connection_settings("reader")


@pytest.fixture
def secure_index(secure_settings: ConnectionSettings, request: pytest.FixtureRequest):
    """A unique index name on the secured node, deleted afterwards."""
    name = _unique_name(request)
    yield name
    connect(secure_settings).indices.delete(index=name, ignore_unavailable=True)


# ---- both engines ------------------------------------------------------------------------------

ENGINES = ("opensearch", "elasticsearch")


@dataclass(frozen=True)
class Engine:
    """One real node of an engine, as the tests of both engines use it."""

    name: str
    settings: ConnectionSettings
    client: Any

    @property
    def backend(self) -> Backend:
        return backend_of(self.client)

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the CLI at this node (the engine is detected)."""
        return {"OPENSEARCH_URL": self.settings.url}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn: a module's tests run against OpenSearch, then Elasticsearch (the
    session's nodes, started once)."""
    settings = request.getfixturevalue(f"{request.param}_settings")
    return Engine(request.param, settings, connect(settings))


@pytest.fixture
def engine_index(engine: Engine, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique index name on the engine's node for one test, deleted afterwards."""
    name = _unique_name(request)
    yield name
    engine.client.indices.delete(index=name, ignore_unavailable=True)
