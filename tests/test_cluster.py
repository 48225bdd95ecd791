"""A real 3-node OpenSearch cluster (`dotbridge opensearch start --nodes 3`), started once per
test session on its own ports: its status, DFS scores on 3 shards with a replica, and the first
named node killed (`kill -9`) while ingest and searches in every mode run through all three.

Ports: DOTBRIDGE_TEST_CLUSTER_PORT (HTTP, 3 from it; default 9260) and
DOTBRIDGE_TEST_CLUSTER_TRANSPORT (transport, 3 from it; default 9270). Heap per node:
DOTBRIDGE_TEST_HEAP (default 512m here).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bridge.backends import backend_of
from bridge.cli import main
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.errors import DotbridgeError
from bridge.indexes import IndexOptions, IndexSpec, ensure_index
from bridge.nodes.cluster import ClusterMember, LocalCluster
from bridge.search.searchers import make_searcher
from tests.ingest_helpers import (
    SCIFACT,
    count,
    distinct_ids,
    indexed_ops,
    ingest_command,
    read_jsonl,
    summary_counts,
)

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("DOTBRIDGE_TEST_CLUSTER_PORT", "9260"))
TRANSPORT = int(os.environ.get("DOTBRIDGE_TEST_CLUSTER_TRANSPORT", "9270"))
HEAP = os.environ.get("DOTBRIDGE_TEST_HEAP", "512m")
N_INGEST = int(os.environ.get("DOTBRIDGE_TEST_CLUSTER_RECORDS", "5000"))
MODES = ("bm25", "rerank", "knn", "hybrid")


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(nodes=3, port=PORT, heap=HEAP, transport_port=TRANSPORT)
    # A cluster left up by an earlier run is used, and left up.
    started_here = not all(m.running_pid() for m in cluster.members())
    try:
        cluster.start(timeout=400)
    except DotbridgeError as exc:
        pytest.fail(f"no 3-node cluster for the cluster tests: {exc.message}")
    # A new cluster answers yellow while the replicas of its own system indexes are placed:
    # the tests start from the green a user sees a moment later.
    client = connect(ConnectionSettings(url=cluster.url))
    deadline = time.monotonic() + 120
    while (status := client.cluster.health()["status"]) != "green":
        if time.monotonic() > deadline:
            pytest.fail(f"the 3-node cluster stayed {status} for 120 s after it started")
        time.sleep(1)
    yield cluster
    if started_here:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_settings(cluster: LocalCluster) -> ConnectionSettings:
    return ConnectionSettings(url=cluster.url)


def kill_hard(member: ClusterMember) -> None:
    """`kill -9` of the node's whole process group: no shutdown, no flush."""
    pid = member.running_pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (member.running_pid() or _listening(member.port)):
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _fill(
    client, encoder, name: str, docs: list[dict], *, shards: int, replicas: int, vectors=None
) -> None:
    options = IndexOptions(shards=shards, replicas=replicas)
    ensure_index(client, name, IndexSpec.of(encoder), options)
    if vectors is None:
        vectors = encoder.encode_passages([f"{d['title']} {d['text']}" for d in docs])
    actions = (
        {
            "_index": name,
            "_id": d["_id"],
            "doc_id": d["_id"],
            "title": d["title"],
            "text": d["text"],
            "vector": v.tolist(),
        }
        for d, v in zip(docs, vectors, strict=True)
    )
    backend_of(client).bulk(client, actions, chunk_size=500)
    client.indices.refresh(index=name)
    for _ in range(10):  # replicas copied: every node holds a copy of what it may serve
        if client.cluster.health(index=name, wait_for_status="green")["status"] == "green":
            break


def test_status_lists_every_node_and_the_cluster_manager(cluster, cluster_settings):
    result = CliRunner().invoke(main, ["opensearch", "status", "--url", cluster_settings.url])
    assert result.exit_code == 0, result.output
    assert "(3 nodes)" in result.output and "green" in result.output
    for port in cluster.ports:
        assert f"node dotbridge-{port}" in result.output and f"127.0.0.1:{port}" in result.output
    assert result.output.count("elected cluster manager") == 1
    local = cluster.status()
    assert local["health"].startswith("green (3 nodes)")
    assert sum("cluster manager" in v for v in local.values()) == 1


def test_bm25_and_rerank_on_3_shards_with_a_replica_match_one_shard(cluster_settings, tiny_encoder):
    client = connect(cluster_settings)
    docs = read_jsonl(SCIFACT, 1000)
    queries = [q["text"] for q in read_jsonl(SCIFACT.parent / "queries.jsonl", 20)]
    one, three = (f"test-cluster-{n}-{uuid.uuid4().hex[:6]}" for n in ("one", "three"))
    try:
        vectors = tiny_encoder.encode_passages([f"{d['title']} {d['text']}" for d in docs])
        _fill(client, tiny_encoder, one, docs, shards=1, replicas=0, vectors=vectors)
        _fill(client, tiny_encoder, three, docs, shards=3, replicas=1, vectors=vectors)
        for mode in ("bm25", "rerank"):
            reference = make_searcher(mode, client, one, tiny_encoder, source=False)
            spread = make_searcher(mode, client, three, tiny_encoder, source=False)
            for query in queries:
                expected = reference.search(query, k=100)
                got = spread.search(query, k=100)
                assert [h.doc_id for h in got] == [h.doc_id for h in expected], (mode, query)
                for a, b in zip(got, expected, strict=True):
                    assert a.score == pytest.approx(b.score, rel=1e-5), (mode, query)
    finally:
        client.indices.delete(index=f"{one},{three}", ignore_unavailable=True)


def _ingest(settings, index, model_dir, tmp_path, *, kill: ClusterMember | None = None):
    """`dotbridge ingest` of N_INGEST SciFact records through every node; with `kill`, that node
    is killed once a fifth of them is indexed. (seconds, summary counts, process output)."""
    cmd = ingest_command(SCIFACT, index, model_dir, "--limit", N_INGEST, "--batch-size", 32)
    cmd += ["--rejects", tmp_path / f"{index}.rejects.jsonl"]
    env = {**os.environ, "OPENSEARCH_URL": settings.url}
    start = time.monotonic()
    proc = subprocess.Popen(
        list(map(str, cmd)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if kill is not None:
        probe = connect(without(settings, kill))
        deadline = time.monotonic() + 300
        while indexed_ops(probe, index) < N_INGEST // 5 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        kill_hard(kill)
    out, err = proc.communicate(timeout=900)
    took = time.monotonic() - start
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    return took, summary_counts(out), out + err


def without(settings: ConnectionSettings, spared: ClusterMember) -> ConnectionSettings:
    """The settings without the node that is about to die (for the test's own probes)."""
    import dataclasses

    urls = [u for u in settings.hosts if not u.endswith(f":{spared.port}")]
    return dataclasses.replace(settings, url=",".join(urls))


@pytest.mark.drill
def test_ingest_and_searches_go_on_when_the_first_named_node_is_killed(
    cluster, cluster_settings, tiny_encoder, tiny_model_dir, tmp_path
):
    """Ingest of N_INGEST records, and searches in every mode, through all three nodes while
    the node named FIRST is killed: exact counts, no duplicates or rejects, no failed search,
    and the ingest within 2x an undisturbed run. Leaves that node dead (the last test)."""
    client = connect(cluster_settings)
    first = cluster.members()[0]
    calm, killed = (f"test-cluster-ingest-{n}-{uuid.uuid4().hex[:6]}" for n in ("calm", "kill"))
    searched = f"test-cluster-search-{uuid.uuid4().hex[:6]}"
    _fill(client, tiny_encoder, searched, read_jsonl(SCIFACT, 500), shards=3, replicas=1)
    queries = [q["text"] for q in read_jsonl(SCIFACT.parent / "queries.jsonl", 10)]
    undisturbed, counts, _ = _ingest(cluster_settings, calm, tiny_model_dir, tmp_path)
    assert counts == (N_INGEST, N_INGEST, 0, 0)

    survivors = connect(without(cluster_settings, first))
    expected = {
        mode: [
            [h.doc_id for h in make_searcher(mode, survivors, searched, tiny_encoder).search(q, 10)]
            for q in queries
        ]
        for mode in MODES
    }
    failures: list[str] = []
    done = threading.Event()
    searches = [0]

    def search_forever() -> None:
        searchers = {
            m: make_searcher(m, connect(cluster_settings), searched, tiny_encoder) for m in MODES
        }
        while not done.is_set():
            for mode, searcher in searchers.items():
                for query, ids in zip(queries, expected[mode], strict=True):
                    try:
                        got = [h.doc_id for h in searcher.search(query, 10)]
                    except Exception as exc:  # counted, reported by the assertion below
                        failures.append(f"{mode}: {type(exc).__name__}: {exc}")
                        continue
                    searches[0] += 1
                    if got != ids:
                        failures.append(f"{mode}: other hits for {query!r}")

    searcher = threading.Thread(target=search_forever)
    searcher.start()
    try:
        disturbed, counts, output = _ingest(
            cluster_settings, killed, tiny_model_dir, tmp_path, kill=first
        )
    finally:
        done.set()
        searcher.join(timeout=120)
    assert first.running_pid() is None and not _listening(first.port)
    assert counts[:3] == (N_INGEST, N_INGEST, 0) or (
        counts[0] == N_INGEST and counts[1] + counts[3] == N_INGEST and counts[2] == 0
    ), output
    assert count(survivors, killed) == distinct_ids(survivors, killed) == N_INGEST
    assert disturbed < 2 * undisturbed, (disturbed, undisturbed)
    assert searches[0] > 0 and failures == [], failures[:5]
    print(
        f"\ningest of {N_INGEST}: undisturbed {undisturbed:.1f} s, first node killed "
        f"{disturbed:.1f} s ({disturbed / undisturbed:.2f}x); {searches[0]} searches, 0 failed"
    )
    survivors.indices.delete(index=f"{calm},{killed},{searched}", ignore_unavailable=True)
