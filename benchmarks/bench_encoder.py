"""Encoder speed per runtime: passages/s against the seed's one-by-one torch loop, query latency.

    python benchmarks/bench_encoder.py [--n 512] [--queries 100] [--repeats 3]
                                       [--models tiny,minilm] [--out bench-results/encoder.json]

For the tiny random DistilBERT of the tests and the packaged all-MiniLM-L6-v2, on SciFact
passages (title + " " + text) and queries, rows for: torch one-by-one (one text per forward
pass, the seed notebook's way), torch batched, ONNX float32 one-by-one and batched, ONNX int8
batched; passages/s, the ratio to torch one-by-one, and single-query latency (p50/p95) of each
runtime. Rounds are interleaved (every row once per round) so that load on a shared machine
falls on all rows alike; medians are reported. Quality on the same data: ONNX float32's largest
difference from torch, and the cosine of int8 vectors to float32 ones (passages and all
queries). Prints Markdown tables and writes the numbers as JSON. ONNX exports are cached in
DOTBRIDGE_HOME like any Encoder's (made once, before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bridge.config import minilm_model_dir  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from tests.ingest_helpers import datasets_dir  # noqa: E402
from tests.model_fixtures import build_tiny_model  # noqa: E402

DEFAULT_CORPUS = datasets_dir() / "scifact" / "corpus.jsonl"

# (label, runtime, quantize, one text per call?)
PATHS = (
    ("torch one-by-one", "torch", "none", True),
    ("torch batched", "torch", "none", False),
    ("onnx float32 one-by-one", "onnx", "none", True),
    ("onnx float32 batched", "onnx", "none", False),
    ("onnx int8 batched", "onnx", "int8", False),
)
BASELINE = "torch one-by-one"


def read_jsonl(path: Path, n: int | None, fields: tuple[str, ...]) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            texts.append(" ".join(record.get(k) or "" for k in fields).strip())
            if n is not None and len(texts) == n:
                break
    return texts


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    return {
        "n": len(cos),
        "mean": float(cos.mean()),
        "p1": percentile(cos, 1),
        "min": float(cos.min()),
    }


def model_gflop(encoder: Encoder, texts: list[str]) -> float:
    """Useful work of encoding texts (padding not counted): matmuls 2*L*(4h^2 + 2hf) and
    attention 4*L^2*h per layer, L each text's token count after truncation."""
    config = encoder.config
    h = config.hidden_size
    f = getattr(config, "intermediate_size", None) or config.hidden_dim
    layers = config.num_hidden_layers
    enc = encoder.tokenizer(texts, truncation=True, max_length=encoder.passage_max_length)
    lengths = np.asarray([len(ids) for ids in enc["input_ids"]], dtype=np.float64)
    per_layer = 2 * lengths * (4 * h * h + 2 * h * f) + 4 * lengths**2 * h
    return float(layers * per_layer.sum()) / 1e9


def bench_model(
    name: str,
    path: Path,
    passages: list[str],
    queries: list[str],
    all_queries: list[str],
    *,
    repeats: int,
    batch_size: int,
) -> dict[str, Any]:
    encoders = {
        (runtime, quantize): Encoder(path, runtime=runtime, quantize=quantize, device="cpu")
        for _, runtime, quantize, _ in PATHS
    }
    for enc in encoders.values():  # warm-up: allocator, thread pools, kernels
        enc.encode_passages(passages[:64], batch_size=batch_size)
        for q in queries[:10]:
            enc.encode_queries([q])

    seconds: dict[str, list[float]] = {label: [] for label, *_ in PATHS}
    latency: dict[tuple[str, str], list[float]] = {key: [] for key in encoders}
    for round_ in range(repeats):
        for label, runtime, quantize, alone in PATHS:
            enc = encoders[(runtime, quantize)]
            if alone:
                seconds[label].append(
                    timed(lambda e=enc: [e.encode_passages([p]) for p in passages])
                )
            else:
                seconds[label].append(
                    timed(lambda e=enc: e.encode_passages(passages, batch_size=batch_size))
                )
        for key, enc in encoders.items():
            for q in queries:
                latency[key].append(1000 * timed(lambda e=enc, q=q: e.encode_queries([q])))
        print(f"{name}: round {round_ + 1}/{repeats} done", file=sys.stderr)

    gflop = model_gflop(encoders[("torch", "none")], passages)
    base = statistics.median(seconds[BASELINE])
    rows = []
    for label, runtime, quantize, alone in PATHS:
        median = statistics.median(seconds[label])
        lat = latency[(runtime, quantize)]
        rows.append(
            {
                "path": label,
                "runtime": runtime,
                "quantize": quantize,
                "batch_size": 1 if alone else batch_size,
                "passages_per_s": len(passages) / median,
                "vs_torch_one_by_one": base / median,
                "useful_gflop_per_s": gflop / median,
                "seconds": seconds[label],
                "query_ms_p50": statistics.median(lat),
                "query_ms_p95": percentile(lat, 95),
            }
        )

    exact, onnx32, int8 = (
        encoders[k] for k in (("torch", "none"), ("onnx", "none"), ("onnx", "int8"))
    )
    p_torch, p_onnx, p_int8 = (e.encode_passages(passages) for e in (exact, onnx32, int8))
    q_torch, q_onnx, q_int8 = (e.encode_queries(all_queries) for e in (exact, onnx32, int8))
    quality = {
        "onnx_float32_vs_torch_max_abs_diff": {
            "passages": float(np.abs(p_onnx - p_torch).max()),
            "queries": float(np.abs(q_onnx - q_torch).max()),
        },
        "int8_cosine_to_float32": {
            "passages": cosine_stats(p_int8, p_onnx),
            "queries": cosine_stats(q_int8, q_onnx),
        },
    }
    return {
        "model": name,
        "dim": exact.dim,
        "pooling": exact.pooling,
        "passage_max_length": exact.passage_max_length,
        "n_passages": len(passages),
        "gflop": gflop,
        "n_queries_timed": len(queries),
        "rows": rows,
        "quality": quality,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | path | batch | passages/s | vs torch one-by-one | useful GFLOP/s "
        "| query p50 ms | query p95 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for r in res["rows"]:
            lines.append(
                f"| {res['model']} | {r['path']} | {r['batch_size']} "
                f"| {r['passages_per_s']:.1f} | {r['vs_torch_one_by_one']:.2f}x "
                f"| {r['useful_gflop_per_s']:.1f} "
                f"| {r['query_ms_p50']:.2f} | {r['query_ms_p95']:.2f} |"
            )
    lines += [
        "",
        "| model | ONNX float32 vs torch, max abs diff (passages / queries) "
        "| int8 cosine to float32, passages: mean / p1 / min | queries: mean / p1 / min |",
        "|---|---:|---:|---:|",
    ]
    for res in results:
        q = res["quality"]
        diff = q["onnx_float32_vs_torch_max_abs_diff"]
        cos_p, cos_q = (q["int8_cosine_to_float32"][k] for k in ("passages", "queries"))
        lines.append(
            f"| {res['model']} | {diff['passages']:.1e} / {diff['queries']:.1e} "
            f"| {cos_p['mean']:.4f} / {cos_p['p1']:.4f} / {cos_p['min']:.4f} (n={cos_p['n']}) "
            f"| {cos_q['mean']:.4f} / {cos_q['p1']:.4f} / {cos_q['min']:.4f} (n={cos_q['n']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="passages to encode")
    parser.add_argument("--queries", type=int, default=100, help="single queries timed")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="tiny,minilm", help="comma-separated: tiny, minilm")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=Path("bench-results/encoder.json"))
    args = parser.parse_args(argv)

    passages = read_jsonl(args.corpus, args.n, ("title", "text"))
    queries_file = args.corpus.with_name("queries.jsonl")
    all_queries = read_jsonl(queries_file, None, ("text",))
    queries = all_queries[: args.queries]

    minilm = minilm_model_dir()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "tiny": ("tiny-distilbert (random)", None),
            "minilm": ("all-MiniLM-L6-v2", minilm),
        }
        for key in args.models.split(","):
            name, path = models[key]
            if path is None:
                path = build_tiny_model(Path(tmp) / "tiny", minilm)
            results.append(
                bench_model(
                    name,
                    path,
                    passages,
                    queries,
                    all_queries,
                    repeats=args.repeats,
                    batch_size=args.batch_size,
                )
            )

    print(markdown(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import onnxruntime

    result = {
        "corpus": str(args.corpus),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": results,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
