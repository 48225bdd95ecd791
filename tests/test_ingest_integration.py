"""Ingest against a real node of each engine (the `engine` fixture: OpenSearch, then
Elasticsearch): counts, stored vectors, rejects, resume after SIGKILL, mismatch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bridge.errors import IndexMismatch
from bridge.indexes import IndexOptions, IndexSpec, available_analyzer, ensure_index
from ingest.ledger import RejectsFile
from ingest.pipeline import ingest
from ingest.readers import Record, read_records
from tests.ingest_helpers import SCIFACT, count, indexed_ops, run_cli, summary_counts

pytestmark = pytest.mark.integration


def test_scifact_slice_count_and_stored_vectors(engine, engine_index, tiny_encoder, tmp_path):
    client, index_name = engine.client, engine_index
    records = list(read_records(SCIFACT, limit=300))
    stats = ingest(
        records,
        client=client,
        index=index_name,
        encoder=tiny_encoder,
        rejects=RejectsFile(tmp_path / "rejects.jsonl"),
        batch_size=32,
        progress=False,
    )
    assert (stats.read, stats.indexed, stats.rejected, stats.already_present) == (300, 300, 0, 0)
    assert stats.truncated == sum(
        tiny_encoder.encode_passages([r.passage], return_truncated=True)[1][0] for r in records
    )
    assert count(client, index_name) == 300
    assert not (tmp_path / "rejects.jsonl").exists()
    sample = [records[i] for i in (0, 17, 123, 299)]
    docs = client.mget(index=index_name, body={"ids": [r.doc_id for r in sample]})["docs"]
    stored = np.array([d["_source"]["vector"] for d in docs], dtype=np.float32)
    expected = tiny_encoder.encode_passages([r.passage for r in sample])
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-6)
    assert [d["_source"].get("title", "") for d in docs] == [r.title for r in sample]
    # Refresh is back to its default after the run, and the pause marker is gone.
    settings = client.indices.get_settings(index=index_name)[index_name]["settings"]
    assert "refresh_interval" not in settings["index"]
    meta = client.indices.get_mapping(index=index_name)[index_name]["mappings"]["_meta"]
    assert meta == IndexSpec.of(tiny_encoder).meta()


def test_bad_file_rejects_every_bad_line_and_indexes_every_good_one(
    engine, engine_index, tiny_encoder, tmp_path
):
    client, index_name = engine.client, engine_index
    # A title mapped as a date makes the engine itself refuse the record whose title is text.
    spec = IndexSpec.of(tiny_encoder)
    body = engine.backend.index_body(
        dimension=spec.dimension,
        similarity=spec.similarity,
        meta=spec.meta(),
        analyzer=available_analyzer(client, "english"),
    )
    body["mappings"]["properties"]["title"] = {"type": "date"}
    client.indices.create(index=index_name, body=body)
    lines = [
        json.dumps({"_id": "g1", "text": "a good passage"}),
        "{broken json",
        json.dumps({"text": "no id"}),
        json.dumps({"_id": "e1", "text": ""}),
        json.dumps({"_id": "g1", "text": "duplicate of the first"}),
        json.dumps({"_id": "g2", "title": "2020-01-01", "text": "another good passage"}),
        json.dumps({"_id": "r1", "title": "not a date", "text": "refused by the server"}),
        json.dumps({"_id": 3, "text": "numeric ids are fine"}),
        json.dumps({"_id": "n1"}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "bad.rejects.jsonl"
    result = run_cli(engine, path, index_name, tiny_encoder, "--rejects", rejects)
    assert result.exit_code == 2, result.output
    assert "6 of 9 records were rejected" in result.output
    by_line = {g["line"]: g for g in map(json.loads, rejects.read_text().splitlines())}
    assert sorted(by_line) == [2, 3, 4, 5, 7, 9]
    assert "not valid JSON" in by_line[2]["reason"]
    assert "id field" in by_line[3]["reason"]
    assert by_line[4] == {"line": 4, "id": "e1", "reason": "empty text"}
    assert by_line[5] == {
        "line": 5,
        "id": "g1",
        "reason": "duplicate id in input (line 1 holds it)",
    }
    assert by_line[7]["id"] == "r1"
    assert f"refused by {engine.backend.product}" in by_line[7]["reason"]
    assert "missing text field" in by_line[9]["reason"]
    assert count(client, index_name) == 3
    read, indexed, rejected, present = summary_counts(result.output)
    assert read == indexed + rejected + present == 9
    assert (indexed, rejected) == (3, 6)


def test_sigkill_then_rerun_resumes_without_duplicates(
    engine, engine_index, tiny_model_dir, tmp_path
):
    client, index_name = engine.client, engine_index
    n = 1500
    good = [r for r in read_records(SCIFACT, limit=n) if isinstance(r, Record)]
    cmd = [
        sys.executable,
        "-m",
        "bridge",
        "ingest",
        str(SCIFACT),
        "--index",
        index_name,
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--limit",
        str(n),
        "--batch-size",
        "16",
        "--no-progress",
        "--rejects",
        str(tmp_path / "r.jsonl"),
    ]
    env = {**os.environ, **engine.env}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if indexed_ops(client, index_name) >= 300:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"ingest ended before it could be killed: {proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = indexed_ops(client, index_name)
    assert 0 < first < n
    # The killed run left refresh paused; the rerun restores it.
    paused = client.indices.get_settings(index=index_name)[index_name]["settings"]["index"]
    assert paused["refresh_interval"] == "-1"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    read, indexed, rejected, present = summary_counts(rerun.stdout)
    encoded = int(re.search(r"encoded (\d+)", rerun.stdout).group(1))
    assert read == len(good) and rejected == 0
    assert present > 0 and indexed + present == len(good)
    assert encoded == indexed < len(good)  # fewer passages encoded the second time
    assert count(client, index_name) == len(good)
    ids = client.search(
        index=index_name,
        body={"size": 0, "aggs": {"ids": {"cardinality": {"field": "doc_id"}}}},
    )["aggregations"]["ids"]["value"]
    assert ids == len(good)
    restored = client.indices.get_settings(index=index_name)[index_name]["settings"]["index"]
    assert "refresh_interval" not in restored


def test_existing_index_with_another_dimension_is_refused(
    engine, engine_index, tiny_encoder, minilm_dir, tmp_path
):
    client, index_name = engine.client, engine_index
    ensure_index(client, index_name, IndexSpec.of(tiny_encoder), IndexOptions())
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"_id": "1", "text": "hello"}) + "\n")
    from bridge.encoder import Encoder

    minilm = Encoder(minilm_dir, device="cpu")
    with pytest.raises(IndexMismatch, match="dimension 32 \\(index\\) vs 384"):
        ingest(
            read_records(path),
            client=client,
            index=index_name,
            encoder=minilm,
            rejects=RejectsFile(tmp_path / "r.jsonl"),
            progress=False,
        )
    assert count(client, index_name) == 0
    assert not (tmp_path / "r.jsonl").exists()
    settings = client.indices.get_settings(index=index_name)[index_name]["settings"]
    assert "refresh_interval" not in settings["index"]


def test_two_shard_workers_fill_one_index_together(engine, engine_index, tiny_encoder, tmp_path):
    client, index_name = engine.client, engine_index
    from ingest.readers import Shard

    total = [r for r in read_records(SCIFACT, limit=120) if isinstance(r, Record)]
    runs = [
        ingest(
            read_records(SCIFACT, limit=120, shard=Shard(i, 2)),
            client=client,
            index=index_name,
            encoder=tiny_encoder,
            rejects=RejectsFile(tmp_path / f"r{i}.jsonl"),
            progress=False,
        )
        for i in range(2)
    ]
    assert [run.indexed for run in runs] == [60, 60]
    assert sum(run.already_present for run in runs) == 0
    assert count(client, index_name) == len(total)


def test_a_copy_of_the_model_elsewhere_is_the_same_model(
    engine, engine_index, tiny_encoder, tiny_model_dir, tmp_path
):
    client, index_name = engine.client, engine_index
    import shutil

    from bridge.encoder import Encoder

    records = list(read_records(SCIFACT, limit=20))
    run = dict(client=client, index=index_name, progress=False)
    ingest(records, encoder=tiny_encoder, rejects=RejectsFile(tmp_path / "a.jsonl"), **run)
    copy = Encoder(shutil.copytree(tiny_model_dir, tmp_path / "copy"), device="cpu")
    again = ingest(records, encoder=copy, rejects=RejectsFile(tmp_path / "b.jsonl"), **run)
    assert (again.already_present, again.indexed) == (20, 0)


def test_refresh_is_restored_when_the_run_fails(engine, engine_index, tiny_encoder, tmp_path):
    client, index_name = engine.client, engine_index

    class Failing:
        """The tiny encoder, failing on its second batch."""

        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name):
            return getattr(tiny_encoder, name)

        def encode_passages(self, texts, **kwargs):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("encoder broke")
            return tiny_encoder.encode_passages(texts, **kwargs)

    ensure_index(client, index_name, IndexSpec.of(tiny_encoder))
    client.indices.put_settings(index=index_name, body={"index": {"refresh_interval": "7s"}})
    with pytest.raises(RuntimeError, match="encoder broke"):
        ingest(
            read_records(SCIFACT, limit=100),
            client=client,
            index=index_name,
            encoder=Failing(),
            rejects=RejectsFile(tmp_path / "r.jsonl"),
            batch_size=16,
            sort_window=1,
            progress=False,
        )
    settings = client.indices.get_settings(index=index_name)[index_name]["settings"]["index"]
    assert settings["refresh_interval"] == "7s"
    meta = client.indices.get_mapping(index=index_name)[index_name]["mappings"]["_meta"]
    assert "paused_refresh_interval" not in meta["dotbridge"]
    assert count(client, index_name) == 16  # the first batch is in, and visible
