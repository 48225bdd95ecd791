"""Faults around an ingest, on a node of the tests' own: a node that dies (and comes back, or
stays down), an engine the node cannot serve, and a mistyped corpus path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.indexes import IndexSpec
from bridge.nodes import LocalNode
from ingest.ledger import RejectsFile
from ingest.pipeline import ingest
from ingest.readers import Record, read_records
from mappings import index_body
from tests.ingest_helpers import (
    SCIFACT,
    count,
    distinct_ids,
    indexed_ops,
    ingest_command,
    refresh_interval,
    summary_counts,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_node():
    """A node these tests may kill: never the session's shared one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = LocalNode(port=port, heap="512m")
    node.start()
    yield node
    node.stop()


def kill_hard(node: LocalNode) -> None:
    """`kill -9` of the node's whole process group: no shutdown, no flush."""
    pid = node.running_pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (node.running_pid() or listening(node.port)):
        time.sleep(0.1)  # the JVM below the launcher script dies a moment later


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_ops(client, index: str, at_least: int, proc=None) -> None:
    deadline = time.monotonic() + 180
    while indexed_ops(client, index) < at_least and time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def test_node_restart_during_ingest_loses_nothing(own_node, tiny_encoder, tmp_path):
    """Transient failures (connection refused, 503 while shards recover) are retried."""
    client = connect(ConnectionSettings(url=own_node.url))
    records = list(read_records(SCIFACT, limit=1200))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["stats"] = ingest(
                records,
                client=client,
                index="restart",
                encoder=tiny_encoder,
                rejects=RejectsFile(tmp_path / "r.jsonl"),
                batch_size=16,
                sort_window=1,
                progress=False,
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    wait_for_ops(client, "restart", 100)
    assert thread.is_alive(), outcome
    kill_hard(own_node)
    own_node.start()
    thread.join(timeout=400)
    assert "error" not in outcome, outcome.get("error")
    stats = outcome["stats"]
    assert stats.read == stats.indexed + stats.already_present == 1200
    assert stats.rejected == 0 and stats.retried > 0
    assert count(client, "restart") == distinct_ids(client, "restart") == 1200
    client.indices.delete(index="restart")


def test_a_node_that_stays_down_ends_the_run_in_one_sentence(own_node, tiny_model_dir, tmp_path):
    client = connect(ConnectionSettings(url=own_node.url))
    index, n = "down", 1500
    good = [r for r in read_records(SCIFACT, limit=n) if isinstance(r, Record)]
    cmd = ingest_command(SCIFACT, index, tiny_model_dir, "--limit", n, "--batch-size", 16)
    cmd += ["--sort-window", "1", "--max-wait", "10", "--rejects", tmp_path / "r.jsonl"]
    env = {**os.environ, "OPENSEARCH_URL": own_node.url}
    proc = subprocess.Popen(
        list(map(str, cmd)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_ops(client, index, 200, proc)
    kill_hard(own_node)
    killed = time.monotonic()
    out, err = proc.communicate(timeout=180)
    waited = time.monotonic() - killed
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err
    assert "stopped answering" in errors[0] and "rerun the same command" in errors[0]
    assert waited < 10 + 60  # --max-wait, plus what the last requests take to fail

    own_node.start()
    assert refresh_interval(client, index) == "-1"  # the killed node could not be told
    rerun = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    read, indexed, rejected, present = summary_counts(rerun.stdout)
    assert (read, rejected) == (len(good), 0) and present > 0
    assert refresh_interval(client, index) is None  # the next run restored it
    assert count(client, index) == distinct_ids(client, index) == len(good)
    client.indices.delete(index=index)


def test_faiss_is_refused_where_the_node_cannot_load_it(own_node, tiny_encoder, tmp_path):
    client = connect(ConnectionSettings(url=own_node.url))
    client.indices.create(
        index="bystander", body={"mappings": {"properties": {"t": {"type": "text"}}}}
    )
    for i in range(3):
        client.index(index="bystander", id=str(i), body={"t": f"doc {i}"}, refresh=True)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(20))
    )
    # An index made elsewhere with the faiss engine: writing to it would be as fatal.
    meta = IndexSpec.of(tiny_encoder).meta()
    spec_body = index_body(dimension=tiny_encoder.dim, similarity="dot", meta=meta, engine="faiss")
    client.indices.create(index="made-with-faiss", body=spec_body)
    before = sorted(i["index"] for i in client.cat.indices(format="json"))

    runner = CliRunner()
    base = ["ingest", str(corpus), "--model", str(tiny_encoder.model_id), "--device", "cpu"]
    env = {"OPENSEARCH_URL": own_node.url}
    new = runner.invoke(main, [*base, "--index", "new-faiss", "--engine", "faiss"], env=env)
    old = runner.invoke(main, [*base, "--index", "made-with-faiss"], env=env)
    for result, expected in ((new, "use --engine lucene"), (old, "created with --engine lucene")):
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and expected in errors[0], result.output
        assert "cannot serve faiss" in errors[0]

    # The node still answers, and every index it had is there, whole.
    assert client.cluster.health(wait_for_status="yellow")["status"] in ("green", "yellow")
    assert not client.indices.exists(index="new-faiss")
    assert sorted(i["index"] for i in client.cat.indices(format="json")) == before
    assert count(client, "bystander") == 3 and count(client, "made-with-faiss") == 0
    client.indices.delete(index="bystander,made-with-faiss")


def test_a_mistyped_path_is_noticed_before_the_model_or_the_cluster(tmp_path):
    missing = tmp_path / "corpsu.jsonl"
    result = CliRunner().invoke(
        main,
        ["ingest", str(missing), "--index", "x", "--model", str(tmp_path / "no-model")],
        env={"OPENSEARCH_URL": "http://127.0.0.1:9"},  # nothing listens there
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip() == (
        f"Error: Input {str(missing)!r} is not a file: give a corpus path or - for stdin."
    )
    assert not Path("x.rejects.jsonl").exists()
