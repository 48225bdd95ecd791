"""The embedded node: a real OpenSearch with k-NN, and clear errors when it cannot be had."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import NodeError
from bridge.nodes import LocalNode, files, iter_java_processes, java
from bridge.nodes import opensearch as opensearch_node
from tests.mirror import serve_directory
from tests.node_fixtures import free_port

pytestmark = pytest.mark.integration


def test_cluster_lists_knn_plugin(os_client):
    components = {p["component"] for p in os_client.cat.plugins(format="json")}
    assert "opensearch-knn" in components


def test_innerproduct_knn_returns_dot_product_order(os_client, index_name):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    query = rng.normal(size=8).astype(np.float32)
    os_client.indices.create(
        index=index_name,
        body={
            "settings": {"index.knn": True, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "v": {
                        "type": "knn_vector",
                        "dimension": 8,
                        "method": {
                            "name": "hnsw",
                            "space_type": "innerproduct",
                            "engine": "lucene",
                        },
                    }
                }
            },
        },
    )
    for i, v in enumerate(vectors):
        os_client.index(index=index_name, id=str(i), body={"v": v.tolist()})
    os_client.indices.refresh(index=index_name)
    resp = os_client.search(
        index=index_name,
        body={"size": 40, "query": {"knn": {"v": {"vector": query.tolist(), "k": 40}}}},
    )
    got = [int(h["_id"]) for h in resp["hits"]["hits"]]
    dots = vectors @ query
    assert got == list(np.argsort(-dots, kind="stable"))
    scores = np.array([h["_score"] for h in resp["hits"]["hits"]])
    back = np.where(scores >= 1, scores - 1, 1 - 1 / scores)
    np.testing.assert_allclose(back, dots[got], rtol=1e-4, atol=1e-4)


def test_warm_start_needs_no_network_and_stop_leaves_no_process(opensearch_settings, monkeypatch):
    # The session node has filled the cache; any download now would hit a dead proxy/mirror.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("DOTBRIDGE_MAVEN_URL", "http://127.0.0.1:9")
    node = LocalNode(port=free_port(), heap="512m")
    try:
        url = node.start()
        assert url == node.url
        assert node.running_pid() is not None
        assert list(iter_java_processes(node.instance))
    finally:
        assert node.stop()
    assert node.running_pid() is None
    assert list(iter_java_processes(node.instance)) == []
    node.reset()  # a node of the test's own: its instance goes too


def test_node_that_does_not_come_up_shows_its_log(opensearch_settings):
    node = LocalNode(port=free_port(), heap="not-a-size")
    with pytest.raises(NodeError, match="exited during start-up") as err:
        node.start(timeout=120)
    assert "last lines of its log" in err.value.message
    assert node.running_pid() is None
    node.reset()


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(NodeError, match=f"Port {port} is already in use"):
            LocalNode(port=port, root=tmp_path).start()


def test_offline_download_is_a_clear_error(tmp_path):
    node = LocalNode(root=tmp_path, maven_url="http://127.0.0.1:9")
    with pytest.raises(NodeError, match="Could not download"):
        node.fetch()
    assert not list((tmp_path / "downloads").iterdir())


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    """A mirror serving a file whose published checksum does not match: nothing is kept."""
    knn = opensearch_node.artifacts("3.5.0")[1]
    mirror = tmp_path / "mirror"
    target = mirror / knn.path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real plugin")
    Path(f"{target}.sha512").write_text(hashlib.sha512(b"something else").hexdigest())
    with serve_directory(mirror) as url:
        node = LocalNode(root=tmp_path / "home", maven_url=url)
        monkeypatch.setattr(opensearch_node, "artifacts", lambda version: (knn,))
        with pytest.raises(NodeError, match="does not match its sha512 checksum"):
            node.fetch()
        assert not (node.downloads / knn.filename).exists()
        # With the right checksum published, the same file is accepted.
        Path(f"{target}.sha512").write_text(hashlib.sha512(b"not the real plugin").hexdigest())
        assert node.fetch()[0].read_bytes() == b"not the real plugin"


def test_too_little_disk_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MIN_FREE_BYTES", 1 << 60)
    with pytest.raises(NodeError, match="GB free"):
        LocalNode(root=tmp_path).fetch()


def test_no_usable_java_is_a_clear_error(tmp_path):
    with pytest.raises(NodeError, match="No usable Java 99"):
        java.find_java(99, tmp_path)


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(NodeError, match="3.5.0"):
        opensearch_node.artifacts("9.9.9")
