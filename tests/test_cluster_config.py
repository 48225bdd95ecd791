"""A local cluster's layout and settings (bridge.nodes.cluster), without starting a node."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.errors import NodeError
from bridge.nodes.cluster import LocalCluster


def test_members_find_each_other_and_keep_their_own_instances(tmp_path):
    cluster = LocalCluster(nodes=3, port=9200, root=tmp_path)
    members = cluster.members([9300, 9301, 9302])
    assert [m.port for m in members] == [9200, 9201, 9202]
    assert cluster.url == "http://127.0.0.1:9200,http://127.0.0.1:9201,http://127.0.0.1:9202"
    assert len({m.instance for m in members}) == 3
    assert all(m.instance.parent == tmp_path / "clusters" / "9200" for m in members)
    settings = members[1].cluster_settings
    assert settings["discovery.seed_hosts"] == [f"127.0.0.1:{p}" for p in (9300, 9301, 9302)]
    assert settings["cluster.initial_cluster_manager_nodes"] == [
        "dotbridge-9200",
        "dotbridge-9201",
        "dotbridge-9202",
    ]
    assert settings["transport.port"] == 9301 and settings["discovery.type"] is None
    # One CA and set of users for all the nodes of a secured cluster.
    secure = LocalCluster(nodes=2, port=9200, root=tmp_path, secure=True).members([1, 2])
    assert secure[0].credentials == secure[1].credentials


def test_transport_ports_are_kept_for_a_restarted_node(tmp_path):
    cluster = LocalCluster(nodes=2, port=9200, root=tmp_path)
    cluster.folder.mkdir(parents=True)
    state = {"nodes": 2, "secure": False, "transport": [9400, 9401]}
    cluster.state_file.write_text(json.dumps(state))
    assert [m.cluster_settings["transport.port"] for m in cluster.members()] == [9400, 9401]
    # Another size on the same port does not take them over.
    other = LocalCluster(nodes=3, port=9200, root=tmp_path)
    assert [m.cluster_settings["transport.port"] for m in other.members()] == [0, 0, 0]


def test_a_cluster_size_out_of_range_is_one_sentence(tmp_path):
    with pytest.raises(NodeError) as caught:
        LocalCluster(nodes=12, root=tmp_path)
    assert "1 to 9 nodes" in caught.value.message
    result = CliRunner().invoke(main, ["opensearch", "start", "--nodes", "0"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_status_of_no_cluster_says_how_to_start_one(tmp_path):
    with pytest.raises(NodeError) as caught:
        LocalCluster(nodes=3, port=9200, root=tmp_path).status()
    assert "dotbridge opensearch start --nodes 3 --port 9200" in caught.value.message
