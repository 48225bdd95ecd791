"""The benchmark runs end to end on a small slice and reports what it measured (no timings)."""

from __future__ import annotations

import json

import pytest

from bridge import bench
from bridge.config import MODES
from bridge.evaluate import load_split
from tests.ingest_helpers import datasets_dir

pytestmark = pytest.mark.integration

SCIFACT = datasets_dir() / "scifact"


def test_bench_on_a_slice_writes_json_markdown_and_png(os_client, tiny_encoder, tmp_path):
    data = load_split(SCIFACT)
    result = bench.run_bench(
        os_client,
        tiny_encoder,
        corpus=data.corpus,
        queries=list(data.queries.values())[:6],
        limit=80,
        warmup=1,
    )
    ingest = result["ingest"]
    assert ingest["docs"] == 80
    for side in ("pipeline", "naive"):
        assert ingest[side]["docs_per_s"] > 0
        assert ingest[side]["encode_s"] > 0 and ingest[side]["wall_s"] >= ingest[side]["index_s"]
    assert ingest["speedup"] == pytest.approx(
        ingest["pipeline"]["docs_per_s"] / ingest["naive"]["docs_per_s"]
    )
    modes = result["latency"]["modes"]
    assert {m["mode"].split(" ")[0] for m in modes} == set(MODES)
    assert modes[0]["median_vs_bm25"] == pytest.approx(1.0)
    assert all(m["p95_ms"] >= m["median_ms"] > 0 for m in modes)
    # The benchmark cleans up after itself.
    assert os_client.indices.get(index="bench-*") == {}

    paths = bench.write_report(result, tmp_path)
    names = {p.name for p in paths}
    assert {"bench.json", "bench.md", "bench.png"} <= names
    assert json.loads((tmp_path / "bench.json").read_text())["ingest"]["docs"] == 80
    markdown = (tmp_path / "bench.md").read_text()
    for m in modes:
        assert f"| {m['mode']} |" in markdown
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_naive_baseline_indexes_the_pipelines_documents(os_client, tiny_encoder, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "t1", "title": "A title", "text": "Vitamin D and bone density."},
        {"_id": "t2", "title": "", "text": "No title here, only text."},
        {"_id": "t3", "title": "  ", "text": "A blank title."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    naive_index, pipeline_index = f"bench-naive-{tmp_path.name}", f"bench-pipe-{tmp_path.name}"
    try:
        records = bench.good_records(corpus, None)
        bench.naive_ingest(os_client, naive_index, records, tiny_encoder)
        bench.pipeline_ingest(os_client, pipeline_index, corpus, None, tiny_encoder)
        for row in rows:
            naive = os_client.get(index=naive_index, id=row["_id"])["_source"]
            piped = os_client.get(index=pipeline_index, id=row["_id"])["_source"]
            naive_vector, piped_vector = naive.pop("vector"), piped.pop("vector")
            assert naive["ingest"].pop("run") != piped["ingest"].pop("run")  # only the run differs
            assert naive == piped
            assert naive_vector == pytest.approx(piped_vector, abs=1e-4)
        assert "title" not in os_client.get(index=naive_index, id="t2")["_source"]
    finally:
        os_client.indices.delete(index=f"{naive_index},{pipeline_index}", ignore_unavailable=True)
