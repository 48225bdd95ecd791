"""`dotbridge ingest --ray` on a real local Ray instance and a real node: the guarantees of a plain
run (every line indexed or rejected with its reason, counts that add up, create never
overwrite, resume that encodes only what is missing), the same vectors as a plain run, every
Ray socket on loopback, and no Ray process left, also after `kill -9` of the driver or of a
worker."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.encoder import Encoder
from ingest.distributed.keeper import LOOPBACK_ENV
from ingest.distributed.local import LocalRay
from ingest.distributed.workers import plan_workers
from ingest.pipeline import ingest_corpus
from ingest.readers import Record, read_records
from tests.ingest_helpers import (
    SCIFACT,
    cli_env,
    count,
    distinct_ids,
    indexed_ops,
    ingest_command,
    refresh_interval,
    summary_counts,
)

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
RAY_NAMES = ("raylet", "gcs_server")
RAY_PATHS = ("/ray/_private/", "/ray/dashboard/", "/ray/autoscaler/", "ingest.distributed.keeper")


def ray_processes() -> dict[int, str]:
    """This user's Ray processes (and keepers): pid -> name."""
    found = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "uids"]):
        try:
            if proc.info["uids"].real != os.getuid():
                continue
            cmdline = proc.info["cmdline"] or []
            first = cmdline[0] if cmdline else ""
            if (
                proc.info["name"] in RAY_NAMES
                or first.startswith("ray::")
                or any(part in arg for arg in cmdline for part in RAY_PATHS)
            ):
                found[proc.info["pid"]] = first.split("/")[-1] or proc.info["name"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(before: dict[int, str], timeout: float = 60) -> dict[int, str]:
    """The Ray processes started since `before` that are still alive after up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = {pid: name for pid, name in ray_processes().items() if pid not in before}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


class SocketWatch:
    """Samples the listening sockets of every Ray process while a run goes on."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int]] = set()  # (process, address, port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SocketWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            for pid, name in ray_processes().items():
                try:
                    conns = psutil.Process(pid).net_connections(kind="inet")
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                for conn in conns:
                    if conn.status == psutil.CONN_LISTEN:
                        self.seen.add((name, conn.laddr.ip, conn.laddr.port))

    @property
    def beyond_loopback(self) -> set[tuple[str, str, int]]:
        return {s for s in self.seen if s[1] not in LOOPBACK}


def encoded(output: str) -> int:
    match = re.search(r"encoded (\d+)", output)
    assert match, output
    return int(match.group(1))


def corpus_with_hostile_lines(
    path: Path, good: int, hostile_lines: bool = True
) -> tuple[set[str], dict[int, str]]:
    """`good` SciFact records (their first 300 characters: the tests' tiny model tokenises in
    Python) with 20 hostile lines spread among them; returns the good ids and line -> part of
    the reason each hostile line must be rejected with."""
    records = [
        dataclasses.replace(r, text=r.text[:300])
        for r in read_records(SCIFACT, limit=good)
        if isinstance(r, Record)
    ]
    assert len(records) == good
    first, tenth = records[0], records[9]
    hostile = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"a string"', "not a JSON object"),
        (json.dumps({"text": "no id"}), "missing id field"),
        (json.dumps({"_id": "  ", "text": "blank id"}), "blank id"),
        (json.dumps({"_id": "no-text"}), "missing text field"),
        (json.dumps({"_id": "empty", "text": "   "}), "empty text"),
        (json.dumps({"_id": "num-text", "text": 42}), "is not a string"),
        (json.dumps({"_id": True, "text": "bool id"}), "must be a string or an integer"),
        ('{"_id": "sur", "text": "lone \\ud800 surrogate"}', "not valid Unicode"),
        ('{"_id": "\\udfff", "text": "x"}', "id is not valid Unicode"),
        (json.dumps({"_id": "x" * 600, "text": "long id"}), "id longer than 512 bytes"),
        (json.dumps({"_id": "t", "title": ["no"], "text": "x"}), "title field"),
        (json.dumps({"_id": {"a": 1}, "text": "object id"}), "must be a string or an integer"),
        (json.dumps({"_id": None, "text": "null id"}), "missing id field"),
        (b"\xff\xfe not utf-8".decode("utf-8", "surrogateescape"), "not valid UTF-8"),
        ("x" * (9 * 1024 * 1024), "line longer than"),
        (json.dumps({"_id": first.doc_id, "text": first.text}), "duplicate id in input (line 1 "),
        (json.dumps({"_id": tenth.doc_id, "text": "other text"}), "duplicate id in input (line 10"),
        ("id-only\twith\ttabs", "not valid JSON"),
    ]
    lines = [json.dumps({"_id": r.doc_id, "title": r.title, "text": r.text}) for r in records]
    if not hostile_lines:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return {r.doc_id for r in records}, {}
    step = (good - 60) // len(hostile)
    for k, (line, _) in enumerate(reversed(hostile)):  # from the end: positions stay put
        lines.insert(good - k * step, line)  # after the originals of the duplicated ids
    rejected = {}
    for number, line in enumerate(lines, 1):
        for text, reason in hostile:
            if line == text:
                rejected[number] = reason
    assert len(rejected) == len(hostile)
    path.write_bytes(
        "".join(line + "\n" for line in lines).encode("utf-8", errors="surrogateescape")
    )
    return {r.doc_id for r in records}, rejected


def vectors(client, index: str) -> dict[str, np.ndarray]:
    from opensearchpy import helpers

    hits = helpers.scan(client, index=index, _source_includes=["vector"], size=1000)
    return {h["_id"]: np.asarray(h["_source"]["vector"], dtype=np.float32) for h in hits}


def test_plan_gives_a_gpu_each_where_there_are_gpus_and_a_cpu_share_otherwise():
    gpus = plan_workers({"CPU": 32.0, "GPU": 4.0}, device="auto", workers=None)
    assert (gpus.workers, gpus.device, gpus.num_gpus, gpus.threads) == (4, "cuda", 1, None)
    cpus = plan_workers({"CPU": 2.0}, device="auto", workers=2)
    # Half of a fair share: two workers on two CPUs leave room (whole CPUs each deadlocked).
    assert (cpus.workers, cpus.device, cpus.num_cpus, cpus.threads) == (2, "cpu", 0.5, 1)
    one = plan_workers({"CPU": 2.0}, device="auto", workers=None)
    assert (one.workers, one.num_cpus, one.threads) == (1, 0.5, 2)  # every core, one worker
    forced = plan_workers({"CPU": 8.0, "GPU": 2.0}, device="cpu", workers=3)
    assert (forced.device, forced.num_gpus, forced.threads) == ("cpu", 0, 2)
    for resources, device, workers, expected in (
        ({"CPU": 8.0, "GPU": 2.0}, "auto", 3, "--workers 3 needs 3 GPUs"),
        ({"CPU": 8.0}, "cuda", None, "the Ray cluster has no GPU"),
        ({"CPU": 8.0, "GPU": 2.0}, "cuda:1", None, "does not go with --ray"),
    ):
        with pytest.raises(Exception, match=re.escape(expected)):
            plan_workers(resources, device=device, workers=workers)


def test_ray_flags_that_cannot_be_meant_are_refused_before_anything_starts(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n')
    before = ray_processes()
    runner = CliRunner()
    for args, sentence in (
        ([str(corpus), "--workers", "2"], "Error: --workers goes with --ray"),
        (["--ray", str(corpus), str(corpus)], "names a file, not a Ray address"),
    ):
        result = runner.invoke(main, ["ingest", *args, "--index", "x"], env={"OPENSEARCH_URL": ""})
        assert result.exit_code == 1 and sentence in result.output, result.output
        assert "Traceback" not in result.output
    assert ray_processes() == before


def test_5000_records_and_20_hostile_lines_through_two_workers(
    os_client, opensearch_settings, index_name, tiny_model_dir, tmp_path
):
    corpus = tmp_path / "corpus.jsonl"
    ids, hostile = corpus_with_hostile_lines(corpus, 5000)
    rejects = tmp_path / "rejects.jsonl"
    flags = ["--batch-size", 32, "--sort-window", 4, "--rejects", rejects]
    command = ingest_command(corpus, index_name, tiny_model_dir, *flags, "--ray", "--workers", 2)
    before = ray_processes()
    with SocketWatch() as sockets:
        done = subprocess.run(
            list(map(str, command)), env=cli_env(opensearch_settings), capture_output=True
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 2, out + err  # done, with rejects
    assert "Traceback" not in err and err.count("Error:") == 1, err
    read, indexed, rejected, present = summary_counts(out)
    assert (read, indexed, rejected, present) == (5020, 5000, 20, 0)
    assert encoded(out) >= 5000  # the two duplicated ids' second lines were encoded too
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(ids)
    assert refresh_interval(os_client, index_name) is None
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in written}.keys() == hostile.keys()
    for entry in written:
        assert hostile[entry["line"]] in entry["reason"], entry

    # Every Ray socket listened on loopback only, and nothing of Ray is left.
    assert {name for name, _, _ in sockets.seen} >= {"gcs_server", "raylet"}, sockets.seen
    assert not sockets.beyond_loopback, sockets.beyond_loopback
    assert not wait_gone(before, timeout=30)

    # The same vectors as a plain run with the same settings (max abs difference 1e-5).
    plain = f"{index_name}-plain"
    try:
        stats = ingest_corpus(
            corpus,
            client=os_client,
            index=plain,
            encoder=Encoder(tiny_model_dir, device="cpu", batch_size=32),
            sort_window=4,
            rejects=tmp_path / "plain-rejects.jsonl",
            progress=False,
        )
        assert (stats.indexed, stats.rejected) == (5000, 20)
        ray_vectors, plain_vectors = vectors(os_client, index_name), vectors(os_client, plain)
        assert ray_vectors.keys() == plain_vectors.keys() == ids
        worst = max(float(np.abs(ray_vectors[k] - plain_vectors[k]).max()) for k in ids)
        assert worst <= 1e-5
        meta = [
            os_client.indices.get_mapping(index=i)[i]["mappings"]["_meta"]
            for i in (index_name, plain)
        ]
        assert meta[0] == meta[1]  # the same model record
    finally:
        os_client.indices.delete(index=plain, ignore_unavailable=True)


def test_kill_9_of_the_driver_leaves_nothing_and_the_rerun_encodes_only_what_is_missing(
    os_client, opensearch_settings, index_name, tiny_model_dir, tmp_path
):
    corpus = tmp_path / "corpus.jsonl"
    good = 2000
    ids, hostile = corpus_with_hostile_lines(corpus, good)
    flags = ["--batch-size", 8, "--sort-window", 1, "--ray", "--workers", 2]
    command = list(map(str, ingest_command(corpus, index_name, tiny_model_dir, *flags)))
    before = ray_processes()
    proc = subprocess.Popen(command, env=cli_env(opensearch_settings), cwd=tmp_path)
    deadline = time.monotonic() + 300
    while indexed_ops(os_client, index_name) < 200 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    started = {pid: name for pid, name in ray_processes().items() if pid not in before}
    assert any(name.startswith("ray::EncoderWorker") for name in started.values()), started
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not wait_gone(before, timeout=60)  # the keeper ended Ray and all it started
    present = count(os_client, index_name)
    assert 0 < present < good  # killed mid-run

    rerun = subprocess.run(
        command, env=cli_env(opensearch_settings), capture_output=True, cwd=tmp_path
    )
    out, err = rerun.stdout.decode(), rerun.stderr.decode()
    assert rerun.returncode == 2, out + err
    read, indexed, rejected, already = summary_counts(out)
    assert (read, rejected, already) == (good + 20, 20, present)
    assert indexed == good - present
    assert encoded(out) == good - present  # nothing present was encoded again
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(ids)
    assert refresh_interval(os_client, index_name) is None  # restored by the rerun
    assert not wait_gone(before, timeout=30)


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster on this machine's loopback, as a user would run one, with its own token."""
    cluster = LocalRay(workers=2)
    address = cluster.start()
    yield cluster, address
    cluster.stop()


def cluster_workers(cluster: LocalRay) -> list[int]:
    """The encoder workers alive in the cluster (the keeper's session)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            first = (proc.info["cmdline"] or [""])[0]
            if (
                first.startswith("ray::EncoderWorker")
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and os.getsid(proc.pid) == cluster.keeper_pid
            ):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return found


def test_kill_9_of_a_worker_on_a_users_cluster_loses_nothing(
    ray_cluster, os_client, opensearch_settings, index_name, tiny_model_dir, tmp_path
):
    cluster, address = ray_cluster
    corpus = tmp_path / "corpus.jsonl"
    ids, _ = corpus_with_hostile_lines(corpus, 2000, hostile_lines=False)
    flags = ["--batch-size", 8, "--sort-window", 1, "--ray", address, "--workers", 2]
    command = list(map(str, ingest_command(corpus, index_name, tiny_model_dir, *flags)))
    env = {**cli_env(opensearch_settings), **cluster.env}
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while indexed_ops(os_client, index_name) < 200 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    workers = cluster_workers(cluster)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    out, err = (part.decode() for part in proc.communicate(timeout=600))
    assert proc.returncode == 0, out + err
    assert "died and Ray restarted it" in err, err  # said, and nothing lost:
    read, indexed, rejected, present = summary_counts(out)
    assert (read, rejected) == (2000, 0) and indexed + present == 2000
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(ids)
    missing = len(ids) - count(os_client, index_name)

    rerun = subprocess.run(command, env=env, capture_output=True, cwd=tmp_path)
    out = rerun.stdout.decode()
    assert rerun.returncode == 0, out + rerun.stderr.decode()
    assert summary_counts(out) == (2000, 0, 0, 2000)
    assert encoded(out) == missing == 0
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(ids)

    # The workers were the runs' own: ended with them, on a cluster that lives on.
    deadline = time.monotonic() + 60
    while cluster_workers(cluster) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cluster_workers(cluster)
    assert {"gcs_server", "raylet"} <= set(ray_processes().values())  # the cluster lives on


def test_a_driver_without_the_token_is_refused(ray_cluster):
    """The instance listens on loopback, which every user of the machine reaches: without its
    token, nobody can run code on it."""
    _, address = ray_cluster
    probe = f"import ray; ray.init(address={address!r}); print('connected')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(LOOPBACK_ENV)
    refused = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0 and "connected" not in refused.stdout
    assert "Authentication token is missing or incorrect" in refused.stderr
