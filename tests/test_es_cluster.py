"""A real 3-node Elasticsearch cluster from `dotbridge elasticsearch start --nodes 3`: its status,
searches through every node's URL while the node named first is killed, and `stop` leaving no
process. A drill (`make drills`): three more JVMs are too heavy for `make test` beside the
OpenSearch cluster it already starts.

Ports: DOTBRIDGE_TEST_ES_CLUSTER_PORT (HTTP, 3 from it; default 9265) and
DOTBRIDGE_TEST_ES_CLUSTER_TRANSPORT (transport, 3 from it; default 9275). Heap per node:
DOTBRIDGE_TEST_HEAP (default 512m).
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.nodes import iter_java_processes
from bridge.nodes.cluster import LocalCluster
from bridge.search.searchers import make_searcher
from tests.ingest_helpers import SCIFACT, read_jsonl
from tests.test_cluster import _fill, kill_hard, without

pytestmark = [pytest.mark.integration, pytest.mark.drill]

PORT = int(os.environ.get("DOTBRIDGE_TEST_ES_CLUSTER_PORT", "9265"))
TRANSPORT = int(os.environ.get("DOTBRIDGE_TEST_ES_CLUSTER_TRANSPORT", "9275"))
HEAP = os.environ.get("DOTBRIDGE_TEST_HEAP", "512m")


def cli(*args: str):
    return CliRunner().invoke(main, ["elasticsearch", *args, "--port", str(PORT)])


def test_a_three_node_elasticsearch_cluster_serves_through_a_node_killed(tiny_encoder):
    cluster = LocalCluster(nodes=3, port=PORT, engine="elasticsearch", transport_port=TRANSPORT)
    started = cli("start", "--nodes", "3", "--heap", HEAP, "--transport-port", str(TRANSPORT))
    try:
        assert started.exit_code == 0, started.output
        assert "(3 nodes) is up" in started.output and cluster.url in started.output
        settings = ConnectionSettings(url=cluster.url)
        client = connect(settings)
        deadline = time.monotonic() + 120
        while (health := client.cluster.health())["status"] != "green":
            assert time.monotonic() < deadline, f"the cluster stayed {health['status']}"
            time.sleep(1)
        assert health["number_of_nodes"] == 3

        status = cli("status")
        assert status.exit_code == 0, status.output
        assert "green (3 nodes)" in status.output
        for port in cluster.ports:
            assert f"dotbridge-{port}" in status.output and f"127.0.0.1:{port}" in status.output
        assert status.output.count("(cluster manager)") == 1

        index = f"test-es-cluster-{uuid.uuid4().hex[:6]}"
        _fill(client, tiny_encoder, index, read_jsonl(SCIFACT, 300), shards=3, replicas=1)
        queries = [q["text"] for q in read_jsonl(SCIFACT.parent / "queries.jsonl", 5)]

        def rankings(settings: ConnectionSettings) -> dict[tuple[str, str], list[str]]:
            found = {}
            for mode in ("bm25", "knn"):
                searcher = make_searcher(mode, connect(settings), index, tiny_encoder)
                for query in queries:
                    found[mode, query] = [h.doc_id for h in searcher.search(query, k=10)]
            return found

        before = rankings(settings)
        first = cluster.members()[0]
        kill_hard(first)
        # Through all three URLs, the dead one first: every search answers, with the same ids.
        began = time.monotonic()
        after = rankings(settings)
        took = time.monotonic() - began
        assert after == before
        assert took < 60, f"searches through a dead first host took {took:.1f} s"
        assert rankings(without(settings, first)) == before
    finally:
        stopped = cli("stop")
    assert stopped.exit_code == 0 and "Elasticsearch cluster stopped." in stopped.output
    for member in cluster.members():
        assert member.running_pid() is None
        assert list(iter_java_processes(member.instance)) == []
