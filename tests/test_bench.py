"""The benchmark runs end to end on a small slice and reports what it measured (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import bench
from bridge.evaluate import load_split
from bridge.search import MODES

pytestmark = pytest.mark.integration

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def test_bench_on_a_slice_writes_json_markdown_and_png(os_client, tiny_encoder, tmp_path):
    data = load_split(SCIFACT)
    result = bench.run_bench(
        os_client,
        tiny_encoder,
        corpus=data.corpus,
        queries=list(data.queries.values())[:6],
        limit=80,
        batch_size=16,
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
