"""The ledger under real concurrency, rejects-file ownership, the faiss verdict, drill nodes."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest
from tqdm import tqdm

from bridge.errors import BadInput, RejectedRecords
from bridge.knn_engines import faiss_unavailable_on
from ingest.ledger import IngestStats, Ledger, RejectsFile, default_rejects_path

THREADS = 8
ROUNDS = 3000


def test_the_ledger_counts_exactly_under_concurrent_updates(tmp_path):
    stats = IngestStats()
    rejects = RejectsFile(tmp_path / "r.jsonl")
    bar = tqdm(disable=False, file=open(tmp_path / "bar.txt", "w"), mininterval=0)  # noqa: SIM115
    ledger = Ledger(stats, rejects, bar)
    start = threading.Barrier(THREADS)

    def hammer(worker: int) -> None:
        start.wait()  # all threads at once, as the reading and the bulk thread run
        for i in range(ROUNDS):
            ledger.read()
            if i % 3 == 0:
                ledger.reject(worker * ROUNDS + i, f"w{worker}-{i}", 'a reason, with "quotes"')
            elif i % 3 == 1:
                ledger.indexed()
            else:
                ledger.already_present()
            ledger.retried(1)
            ledger.encoded(1, i % 2, 0.0)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rejects.close()
    total = THREADS * ROUNDS
    assert stats.read == total == stats.indexed + stats.rejected + stats.already_present
    assert stats.rejected == THREADS * len(range(0, ROUNDS, 3))
    assert (stats.retried, stats.encoded, stats.truncated) == (total, total, total // 2)
    assert bar.n == total
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == stats.rejected == len({r["line"] for r in lines})


def test_one_rejects_file_per_worker(tmp_path):
    assert str(default_rejects_path("idx")) == "idx.rejects.jsonl"
    names = {str(default_rejects_path("idx", i, 3)) for i in range(3)}
    assert len(names) == 3 and "idx.shard-1-of-3.rejects.jsonl" in names


def test_rejected_records_fail_the_run_with_exit_status_2(tmp_path):
    clean = IngestStats(read=3, indexed=2, already_present=1)
    clean.raise_for_rejects()  # nothing rejected: the run succeeded
    stats = IngestStats(read=5, indexed=3, rejected=2, rejects_path=tmp_path / "r.jsonl")
    with pytest.raises(RejectedRecords) as info:
        stats.raise_for_rejects()
    assert info.value.exit_code == 2
    assert str(info.value) == f"2 of 5 records were rejected; reasons in {tmp_path / 'r.jsonl'}."


def test_a_rejects_file_in_use_is_refused_and_never_wiped(tmp_path):
    path = tmp_path / "shared.jsonl"
    first = RejectsFile(path)
    first.write(3, "a", "kept")
    with pytest.raises(BadInput, match="in use by another ingest run"):
        RejectsFile(path)
    first.close()
    assert json.loads(path.read_text()) == {"line": 3, "id": "a", "reason": "kept"}
    second = RejectsFile(path)  # the next run takes it over and starts it afresh
    second.close()
    assert not path.exists()  # nothing rejected: no file


def node(name="n1", *, plugins=("opensearch-knn",), home=None, build="tar", roles=("data",)):
    return {
        "name": name,
        "roles": list(roles),
        "build_type": build,
        "os": {"name": "Linux"},
        "plugins": [{"name": p} for p in plugins],
        "settings": {"path": {"home": str(home)}} if home else {},
        "process": {"id": -1},
        "jvm": {"input_arguments": []},
    }


def test_faiss_verdict_from_node_info(tmp_path):
    assert faiss_unavailable_on([node()]) is None  # a remote official distribution
    assert "integration-test zip" in faiss_unavailable_on([node(build="zip")])
    assert "no k-NN plugin" in faiss_unavailable_on([node(plugins=())])
    # A coordinating-only node does not write segments; the data node decides.
    mixed = [node("c", plugins=(), roles=("ingest",)), node("d")]
    assert faiss_unavailable_on(mixed) is None
    # An install on this machine is looked into, whatever its build type: the plugin's lib/
    # folder (its environment cannot be read here: no such process), or java.library.path.
    lib = tmp_path / "plugins" / "opensearch-knn" / "lib"
    lib.mkdir(parents=True)
    local = node(home=tmp_path, build="zip")
    assert "has no faiss native library" in faiss_unavailable_on([local])
    (lib / "libopensearchknn_faiss_avx2.so").write_bytes(b"")
    assert faiss_unavailable_on([local]) is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    local["jvm"]["input_arguments"] = [f"-Djava.library.path={elsewhere}"]
    assert "has no faiss native library" in faiss_unavailable_on([local])  # not on its path
    (elsewhere / "libopensearchknn_faiss.so").write_bytes(b"")
    assert faiss_unavailable_on([local]) is None
    # A node process whose environment can be read: its LD_LIBRARY_PATH decides.
    local["jvm"]["input_arguments"] = []
    for path, verdict in ((elsewhere, None), (tmp_path, "has no faiss native library")):
        env = {"LD_LIBRARY_PATH": str(path), "PATH": "/usr/bin:/bin"}
        # Popen returns once exec() has begun, before the new environment is in place: the
        # stand-in says when its own code runs.
        stand_in_code = ["sh", "-c", "echo ready; sleep 30"]
        with subprocess.Popen(stand_in_code, env=env, stdout=subprocess.PIPE) as stand_in:
            assert stand_in.stdout.readline() == b"ready\n"
            local["process"]["id"] = stand_in.pid
            found = faiss_unavailable_on([local])
            stand_in.kill()
        assert found == verdict if verdict is None else verdict in found


def test_local_node_extra_settings_reach_opensearch_yml(tmp_path):
    from bridge.nodes import LocalNode
    from bridge.nodes.java import find_java

    node = LocalNode(port=9295, extra_settings={"thread_pool.write.queue_size": 2})
    if not (node.home / "config").is_dir():
        node.assemble()
    instance = node.instance
    existed = instance.exists()
    instance.mkdir(parents=True, exist_ok=True)
    try:
        node.configure(find_java(21, node.base))
        yml = (instance / "config" / "opensearch.yml").read_text().splitlines()
        assert "thread_pool.write.queue_size: 2" in yml
        assert "http.port: 9295" in yml
    finally:
        if not existed:
            import shutil

            shutil.rmtree(instance, ignore_errors=True)
