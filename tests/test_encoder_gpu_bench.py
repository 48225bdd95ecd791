"""benchmarks/gpu.sh stays runnable: on a machine without CUDA it stops at once with one line
and its own exit status, and its code paths run end to end on the CPU in --smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.client import connect
from bridge.config import ConnectionSettings

REPO = Path(__file__).resolve().parents[1]
EXIT_NO_CUDA = 69


def run_gpu_sh(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # no GPU even where there is one: the CPU-only machine
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        **env,
    }
    return subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), str(out), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_without_cuda_it_says_so_in_one_line_and_exits_69(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_gpu_sh(out)
    assert done.returncode == EXIT_NO_CUDA, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip() == "no CUDA device"
    assert not out.exists()  # nothing measured, nothing written


@pytest.mark.integration
def test_smoke_run_on_the_cpu_measures_and_ingests(
    opensearch_settings: ConnectionSettings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--smoke", "--batch-sizes", "1,4", "--min-passages", "8", "--one-by-one", "3"]
    args += ["--repeats", "1", "--ingest-docs", "25", "--ingest-batch-size", "8"]
    done = run_gpu_sh(out, *args, OPENSEARCH_URL=opensearch_settings.url)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "gpu.json").read_text())
    assert result["smoke"] is True and result["environment"]["device"] == "cpu"
    rows = result["throughput"]["rows"]
    seen = {(r["dtype"], r["path"], r["batch_size"]) for r in rows}
    assert seen == {
        ("float32", "one-by-one", 1),
        *((d, p, b) for d in ("float16", "bfloat16") for p, b in (("one-by-one", 1),)),
        *((d, "batched", b) for d in ("float16", "bfloat16") for b in (1, 4)),
    }
    assert all(r["passages_per_s"] > 0 and r["vs_one_by_one_float32"] > 0 for r in rows)
    assert result["throughput"]["tokenizer_passages_per_s"] > 0
    ingest = result["ingest"]
    assert (ingest["docs"], ingest["count_in_index"], ingest["batch_size"]) == (25, 25, 8)
    assert ingest["encode_s"] > 0 and ingest["index_s"] > 0
    assert ingest["wall_s"] >= ingest["encode_s"]
    assert "| float16 | batched | 4 |" in done.stdout
    client = connect(opensearch_settings)
    assert not client.indices.get(index="bench-gpu-*", ignore_unavailable=True)


def _bench_gpu():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks/bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_passages_come_from_a_saved_tokenizer(tiny_model_dir: Path, tmp_path) -> None:
    """Without SciFact the benchmark makes text from the model's vocabulary, whatever files the
    installed transformers saved (5.x writes tokenizer.json and no vocab.txt)."""
    bench_gpu = _bench_gpu()
    passages = bench_gpu.read_passages(tmp_path / "absent.jsonl", tiny_model_dir, synthetic=20)
    assert len(passages.texts) == 20 and passages.source.startswith("synthetic")
    words = {w for text in passages.texts for w in text.split()}
    assert len(words) > 100 and all(w.isalpha() for w in words)
    again = bench_gpu.read_passages(tmp_path / "absent.jsonl", tiny_model_dir, synthetic=20)
    assert again.texts == passages.texts  # seeded: the same texts every run


def test_the_corpus_is_found_the_documented_way(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "scifact"
    (folder / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (folder / name).write_text("")
    monkeypatch.setenv("DOTBRIDGE_DATASETS", str(tmp_path))
    assert _bench_gpu()._default_corpus() == folder / "corpus.jsonl"
