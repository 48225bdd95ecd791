"""A real OpenSearch node for integration tests: OPENSEARCH_URL when set, else the embedded one.

Integration tests fail, never skip, when no node can be had.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.errors import DotbridgeError
from bridge.nodes import LocalNode

TEST_PORT = int(os.environ.get("DOTBRIDGE_TEST_PORT", "9250"))


@pytest.fixture(scope="session")
def opensearch_settings(request: pytest.FixtureRequest) -> Iterator[ConnectionSettings]:
    node = None
    if os.environ.get("OPENSEARCH_URL"):
        settings = ConnectionSettings.from_env()
    else:
        node = LocalNode(port=TEST_PORT, heap=os.environ.get("DOTBRIDGE_TEST_HEAP", "1g"))
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
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        # Into the log, past pytest's capture: which node the integration tests talk to.
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nOpenSearch {info['version']['number']} at {settings.url}; "
                f"_cat/plugins:\n{plugins}"
            )
    yield settings
    if node is not None and started_here:
        node.stop()


@pytest.fixture
def os_client(opensearch_settings: ConnectionSettings) -> OpenSearch:
    return connect(opensearch_settings)


@pytest.fixture
def index_name(os_client: OpenSearch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique index name for one test, deleted afterwards."""
    name = f"test-{request.node.name.lower()[:40]}-{uuid.uuid4().hex[:8]}"
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    yield name
    os_client.indices.delete(index=name, ignore_unavailable=True)
