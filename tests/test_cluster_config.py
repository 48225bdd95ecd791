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


def test_an_elasticsearch_cluster_has_its_own_folder_and_elasticsearch_discovery(tmp_path):
    cluster = LocalCluster(nodes=3, port=9201, root=tmp_path, engine="elasticsearch")
    members = cluster.members([9310, 9311, 9312])
    assert [m.product for m in members] == ["Elasticsearch"] * 3
    assert cluster.version == "8.19.21" and cluster.heap == "1g"
    assert all(m.instance.parent == tmp_path / "clusters" / "elasticsearch-9201" for m in members)
    assert members[0].home == tmp_path / "elasticsearch-8.19.21"  # the single node's home
    settings = members[2].cluster_settings
    assert settings["cluster.initial_master_nodes"] == [
        "dotbridge-9201",
        "dotbridge-9202",
        "dotbridge-9203",
    ]
    assert "cluster.initial_cluster_manager_nodes" not in settings
    # Beside an OpenSearch cluster on the same port, never in its folder.
    assert cluster.folder != LocalCluster(nodes=3, port=9201, root=tmp_path).folder
    with pytest.raises(NodeError) as caught:
        LocalCluster(nodes=3, root=tmp_path, engine="elasticsearch", secure=True)
    assert "security off" in caught.value.message
    with pytest.raises(NodeError) as caught:
        cluster.status()
    assert "dotbridge elasticsearch start --nodes 3 --port 9201" in caught.value.message


def test_an_elasticsearch_node_config_carries_the_cluster_settings(tmp_path):
    from bridge.nodes.java import JavaRuntime

    cluster = LocalCluster(nodes=2, port=9201, root=tmp_path, engine="elasticsearch")
    member = cluster.members([9310, 9311])[1]
    home = member.home
    (home / "config").mkdir(parents=True)
    (home / "config" / "jvm.options").write_text("-Xms1g\n-Xmx1g\n")
    java = JavaRuntime(home=tmp_path, major=17, has_vector_module=False)
    config = member.configure(java)
    written = (config / "elasticsearch.yml").read_text()
    assert "discovery.type" not in written  # single-node discovery is left out
    assert 'node.name: "dotbridge-9202"' in written
    assert "transport.port: 9311" in written
    assert 'discovery.seed_hosts: ["127.0.0.1:9310", "127.0.0.1:9311"]' in written
    assert "xpack.security.enabled: false" in written
    assert config.parent == member.instance
