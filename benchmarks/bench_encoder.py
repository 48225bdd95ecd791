"""Encoder throughput: batched vs one-by-one passages/s, and single-query latency.

    python benchmarks/bench_encoder.py [--device auto] [--n 512] [--out bench-results/encoder.json]

Runs the tiny random DistilBERT of the tests and the packaged all-MiniLM-L6-v2 on SciFact
passages (title + " " + text); prints a Markdown table and writes the same numbers as JSON.
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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bridge.config import minilm_model_dir  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from tests.model_fixtures import build_tiny_model  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/datasets/scifact/corpus.jsonl"


def read_jsonl(path: Path, n: int, fields: tuple[str, ...]) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            texts.append(" ".join(record.get(k, "") for k in fields).strip())
            if len(texts) == n:
                break
    return texts


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(encoder: Encoder, name: str, passages: list[str], queries: list[str], repeats: int):
    encoder.encode_passages(passages[:64])  # warm-up: allocator, kernels, thread pool
    batched = median_seconds(lambda: encoder.encode_passages(passages), repeats)
    one_by_one = median_seconds(lambda: [encoder.encode_passages([p]) for p in passages], repeats)
    latencies = []
    for q in queries:
        started = time.perf_counter()
        encoder.encode_queries([q])
        latencies.append(time.perf_counter() - started)
    n = len(passages)
    return {
        "model": name,
        "device": encoder.device,
        "dtype": encoder.dtype,
        "dim": encoder.dim,
        "pooling": encoder.pooling,
        "passage_max_length": encoder.passage_max_length,
        "batch_size": encoder.batch_size,
        "n_passages": n,
        "batched_passages_per_s": n / batched,
        "one_by_one_passages_per_s": n / one_by_one,
        "speedup": one_by_one / batched,
        "query_latency_ms_median": 1000 * statistics.median(latencies),
        "n_queries": len(queries),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | device | dtype | max len | batched passages/s | one-by-one passages/s "
        "| batched / one-by-one | query latency ms (median) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['device']} | {r['dtype']} | {r['passage_max_length']} "
            f"| {r['batched_passages_per_s']:.1f} | {r['one_by_one_passages_per_s']:.1f} "
            f"| {r['speedup']:.2f}x | {r['query_latency_ms_median']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--n", type=int, default=512, help="passages to encode")
    parser.add_argument("--queries", type=int, default=50, help="single queries timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=Path("bench-results/encoder.json"))
    args = parser.parse_args(argv)

    passages = read_jsonl(args.corpus, args.n, ("title", "text"))
    queries_file = args.corpus.with_name("queries.jsonl")
    queries = (
        read_jsonl(queries_file, args.queries, ("text",))
        if queries_file.is_file()
        else [p.split(". ")[0] for p in passages[: args.queries]]
    )

    minilm = minilm_model_dir()
    common = {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp), minilm)
        for name, path in (("tiny-distilbert (random)", tiny), ("all-MiniLM-L6-v2", minilm)):
            encoder = Encoder(path, **common)
            rows.append(bench(encoder, name, passages, queries, args.repeats))
            print(f"done: {encoder!r}", file=sys.stderr)

    table = markdown(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "corpus": str(args.corpus),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
