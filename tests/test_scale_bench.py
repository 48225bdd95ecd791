"""benchmarks/scale.py stays runnable and measures what docs/scale.md says it does: its vector
blocks extend the real base with seeded perturbed copies, its streamed exact top 10 equals a
plain numpy top 10 over the whole matrix, and a small run end to end on the session's node
writes a row per size and level whose recall is the overlap with that top 10."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.encoder import Encoder
from bridge.indexes import IndexOptions, IndexSpec, ensure_index

REPO = Path(__file__).resolve().parents[1]


def _scale():
    spec = importlib.util.spec_from_file_location("scale", REPO / "benchmarks/scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base(n: int, dim: int = 16) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    docs = [{"doc_id": f"b{i}", "title": f"t{i}", "text": f"text {i}"} for i in range(n)]
    return docs, base


def test_blocks_keep_the_base_then_add_seeded_unit_copies(monkeypatch) -> None:
    scale = _scale()
    monkeypatch.setattr(scale, "BLOCK", 7)  # several blocks, copies starting mid-block
    docs, base = _base(10)
    got = list(scale.blocks(docs, base, 45))
    ids = [d["doc_id"] for block, _ in got for d in block]
    vecs = np.concatenate([v for _, v in got])
    assert ids == [f"s{i}" for i in range(45)] and vecs.shape == (45, 16)
    np.testing.assert_array_equal(vecs[:10], base)  # the real vectors, untouched
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    copies = vecs[10:]
    parents = base[np.arange(10, 45) % 10]
    cosines = np.sum(copies * parents, axis=1)
    assert not np.allclose(copies, parents)  # perturbed...
    assert cosines.min() > 0.9  # ...but close to the passage they copy (sigma 0.02, 16-d)
    texts = [d["text"] for block, _ in got for d in block]
    assert texts[37] == docs[37 % 10]["text"]  # a copy carries its passage's text
    again = np.concatenate([v for _, v in scale.blocks(docs, base, 45)])
    np.testing.assert_array_equal(again, vecs)  # seeded: the same copies every run


def test_the_streamed_exact_top10_is_numpys_top10(monkeypatch) -> None:
    scale = _scale()
    monkeypatch.setattr(scale, "BLOCK", 13)
    docs, base = _base(20)
    size = 150
    matrix = np.concatenate([v for _, v in scale.blocks(docs, base, size)])
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((6, 16)).astype(np.float32)
    truth = scale.Truth(docs, base, size, queries)
    plain = np.argsort(-(queries.astype(np.float64) @ matrix.T.astype(np.float64)), axis=1)
    assert truth.sets == [{f"s{i}" for i in row[:10]} for row in plain]


def test_misses_measure_how_far_below_the_exact_tenth_a_wrong_hit_scores(monkeypatch) -> None:
    scale = _scale()
    from bridge.search.searchers import Hit

    monkeypatch.setattr(scale, "BLOCK", 11)
    docs, base = _base(5)
    size = 60  # 11 copies of each of the 5 passages
    matrix = np.concatenate([v for _, v in scale.blocks(docs, base, size)])
    queries = base[:2] + 0.01  # each close to one passage, so its copies fill the top ten
    truth = scale.Truth(docs, base, size, queries)
    exact = queries.astype(np.float64) @ matrix.T.astype(np.float64)
    order = np.argsort(-exact, axis=1)
    np.testing.assert_allclose(truth.tenth, exact[[0, 1], order[:, 9]])
    assert truth.sources == [len({int(i) % 5 for i in row[:10]}) for row in order]

    def hit(q: int, rank: int) -> Hit:
        i = int(order[q, rank])
        return Hit(f"s{i}", float(exact[q, i]), {}, similarity=float(exact[q, i]))

    tenth = float(truth.tenth[1])
    found = [hit(0, r) for r in range(10)]  # the exact ten
    near = Hit("s900", tenth - scale.NEAR / 2, {}, similarity=tenth - scale.NEAR / 2)
    far = Hit("s901", tenth - 0.5, {}, similarity=tenth - 0.5)
    wrong = [hit(1, r) for r in range(8)] + [near, far]  # two of the exact ten missed
    got = scale.misses([found, wrong], truth)
    assert got["missed"] == 2
    assert got["miss_gap_p50"] == pytest.approx((scale.NEAR / 2 + 0.5) / 2)
    assert got["miss_gap_max"] == pytest.approx(0.5)
    assert got["recall10_near"] == pytest.approx((1.0 + 0.9) / 2)  # the near miss counts
    assert scale.recall([found, wrong], truth.sets) == pytest.approx((1.0 + 0.8) / 2)


@pytest.mark.integration
def test_a_small_run_end_to_end(
    opensearch_settings: ConnectionSettings, minilm_dir: Path, tmp_path: Path
) -> None:
    client = connect(opensearch_settings)
    encoder = Encoder(minilm_dir, device="cpu")
    source = f"test-scale-source-{uuid.uuid4().hex[:8]}"
    texts = [f"passage {i} about {w}" for i, w in enumerate(["cells", "genes", "rats"] * 20)]
    vectors = encoder.encode_passages(texts)
    ensure_index(client, source, IndexSpec.of(encoder), IndexOptions())
    try:
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            body = {"doc_id": f"p{i}", "title": "", "text": text, "vector": vector.tolist()}
            client.index(index=source, id=f"p{i}", body=body)
        client.indices.refresh(index=source)
        out = tmp_path / "scale.json"
        args = ["--url", opensearch_settings.url, "--source-index", source, "--out", str(out)]
        done = subprocess.run(
            [sys.executable, str(REPO / "benchmarks/scale.py"), *args, "--sizes", "200,400"],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        client.indices.delete(index=source, ignore_unavailable=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["size"], r["compression"]) for r in rows] == [
        (size, level) for size in (200, 400) for level in ("none", "4x")
    ]
    for row in rows:
        assert 0.5 <= row["recall10"] <= 1 and 0.5 <= row["recall10_ef"] <= 1
        assert row["docs_per_s"] > 0 and row["knn_p50_ms"] <= row["knn_p99_ms"]
    none, quantised = rows[2], rows[3]
    # the quantised copy sits beside the float32 vectors: less to search, more on disk
    assert quantised["memory_per_vector"] < none["memory_per_vector"]
    assert quantised["disk_per_vector"] > none["disk_per_vector"]
    assert "Growth 200 -> 400 (x2 vectors)" in done.stdout
    assert not client.indices.get(index="scale-*", ignore_unavailable=True)  # cleaned up
