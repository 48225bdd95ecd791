"""The local Elasticsearch node: a real 8.19 node, dense_vector k-NN, and checked downloads."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from bridge.cli import main
from bridge.errors import NodeError
from bridge.nodes import ElasticsearchNode, iter_java_processes, maven
from bridge.nodes import elasticsearch as elasticsearch_node
from tests.mirror import serve_directory
from tests.node_fixtures import free_port

pytestmark = pytest.mark.integration


def test_start_status_stop_leaves_no_java_process(elasticsearch_settings, monkeypatch):
    # The session node has filled the cache; any download now would hit a dead proxy/mirror.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("DOTBRIDGE_MAVEN_URL", "http://127.0.0.1:9")
    node = ElasticsearchNode(port=free_port(), heap="512m")
    try:
        assert node.start() == node.url
        pids = list(iter_java_processes(node.instance))
        assert pids, "no java process carries the instance's config"
        if os.geteuid() == 0:  # Elasticsearch refuses root: it runs as an unprivileged user
            nobody = pwd.getpwnam("nobody").pw_uid
            assert {Path(f"/proc/{pid}").stat().st_uid for pid in pids} == {nobody}
        result = CliRunner().invoke(main, ["elasticsearch", "status", "--port", str(node.port)])
        assert result.exit_code == 0, result.output
        assert f"version:  {node.version}" in result.output
        assert "health:   green" in result.output or "health:   yellow" in result.output
        assert node.status()["pid"] == node.running_pid()
        # Loopback only, single node, security off: as configured.
        info = Elasticsearch(node.url).nodes.info(node_id="_local", metric="http,settings")
        (described,) = info["nodes"].values()
        assert all(a.startswith("127.0.0.1:") for a in described["http"]["bound_address"])
        assert described["settings"]["xpack"]["security"]["enabled"] == "false"
        assert described["settings"]["discovery"]["type"] == "single-node"
    finally:
        assert node.stop()
    assert node.running_pid() is None
    assert list(iter_java_processes(node.instance)) == []
    result = CliRunner().invoke(main, ["elasticsearch", "status", "--port", str(node.port)])
    assert result.exit_code == 1
    assert f"No local Elasticsearch node runs on port {node.port}" in result.output
    shutil.rmtree(node.instance)  # a node of the test's own: its instance goes too


def test_max_inner_product_knn_returns_dot_product_order(es_client, es_index):
    rng = np.random.default_rng(3)
    vectors = (rng.normal(size=(60, 16)) * rng.uniform(0.1, 3.0, (60, 1))).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    es_client.indices.create(
        index=es_index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings={
            "properties": {
                "v": {
                    "type": "dense_vector",
                    "dims": 16,
                    "index": True,
                    "similarity": "max_inner_product",
                    "index_options": {"type": "hnsw"},
                }
            }
        },
    )
    for i, v in enumerate(vectors):
        es_client.index(index=es_index, id=str(i), document={"v": v.tolist()})
    es_client.indices.refresh(index=es_index)
    resp = es_client.search(
        index=es_index,
        knn={"field": "v", "query_vector": query.tolist(), "k": 60, "num_candidates": 60},
        size=60,
        source=False,
    )
    got = [int(h["_id"]) for h in resp["hits"]["hits"]]
    dots = vectors.astype(np.float64) @ query.astype(np.float64)
    assert (dots > 0).any() and (dots < 0).any()
    assert got == list(np.argsort(-dots, kind="stable"))


def test_checksum_mismatch_is_refused(tmp_path):
    """A tampered zip beside the genuine checksum, or beside a checksum made for it: refused."""
    (artifact,) = elasticsearch_node.artifacts(elasticsearch_node.DEFAULT_VERSION)
    mirror = tmp_path / "mirror"
    target = mirror / artifact.path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real distribution")
    genuine = maven.PINNED_SHA512[artifact.filename]
    Path(f"{target}.sha512").write_text(f"{genuine}  {artifact.filename}\n")
    with serve_directory(mirror) as url:
        node = ElasticsearchNode(root=tmp_path / "home", maven_url=url)
        with pytest.raises(NodeError, match="does not match its sha512 checksum"):
            node.fetch()
        assert not any(node.downloads.iterdir())
        # A mirror that publishes a checksum of its own file is caught by the pinned digest.
        forged = hashlib.sha512(b"not the real distribution").hexdigest()
        Path(f"{target}.sha512").write_text(forged)
        with pytest.raises(NodeError, match="differs from the one dotbridge pins"):
            node.fetch()
        assert not any(node.downloads.iterdir())


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(NodeError, match="8.19.21"):
        elasticsearch_node.artifacts("9.9.9")
