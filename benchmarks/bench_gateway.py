"""The gateway's added latency: pass-through against the cluster directly, and a neural query
against `dotbridge search --mode knn` in-process (same model, same index).

    python benchmarks/bench_gateway.py [--url http://127.0.0.1:9200] [--model DIR] [--docs 300]
                                       [--rounds 300] [--out bench-results/gateway.json]

Fills an index with the first SciFact documents (all-MiniLM-L6-v2 by default), starts
`dotbridge serve` on a free loopback port in front of the cluster, and times requests one at
a time, direct and through the gateway alternately (so that both see the same machine load).
Prints medians, p95s, the median of the paired differences and the ratios; goals: pass-through
p50 at most 2 ms over direct, neural p50 at most 3 ms over in-process k-NN.
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
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from bridge.client import connect  # noqa: E402
from bridge.config import ConnectionSettings, minilm_model_dir  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from bridge.search import make_searcher  # noqa: E402
from ingest.pipeline import ingest_corpus  # noqa: E402
from tests.gateway_fixtures import SCIFACT, read_jsonl, start_gateway, stop, wait_ready  # noqa: E402

HTTP = urllib3.PoolManager(maxsize=4, retries=False)


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000.0


def get_ok(url: str, method: str = "GET", body: dict | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    resp = HTTP.request(method, url, body=data, headers=headers)
    if resp.status != 200:
        raise SystemExit(f"{method} {url} answered {resp.status}: {resp.data[:300]!r}")


def paired(rounds: int, a: Callable[[int], object], b: Callable[[int], object]) -> dict:
    """Alternate a and b for `rounds` rounds (after a warm-up); their latencies in ms."""
    for i in range(10):
        a(i)
        b(i)
    times_a, times_b = [], []
    for i in range(rounds):
        if i % 2:  # alternate which goes first
            times_b.append(timed(lambda i=i: b(i)))
            times_a.append(timed(lambda i=i: a(i)))
        else:
            times_a.append(timed(lambda i=i: a(i)))
            times_b.append(timed(lambda i=i: b(i)))
    diffs = [y - x for x, y in zip(times_a, times_b, strict=True)]
    return {
        "p50_a": statistics.median(times_a),
        "p50_b": statistics.median(times_b),
        "p95_a": statistics.quantiles(times_a, n=20)[-1],
        "p95_b": statistics.quantiles(times_b, n=20)[-1],
        "p50_added": statistics.median(times_b) - statistics.median(times_a),
        "median_paired_diff": statistics.median(diffs),
        "ratio": statistics.median(times_b) / statistics.median(times_a),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--model", help="Model directory (default: packaged all-MiniLM-L6-v2).")
    parser.add_argument("--pooling", help="Pooling override, passed to both sides.")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench-results/gateway.json"))
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark index.")
    args = parser.parse_args()

    settings = ConnectionSettings.from_env(url=args.url)
    client = connect(settings)
    model_dir = Path(args.model) if args.model else minilm_model_dir()
    label = model_dir.name if args.model else "all-MiniLM-L6-v2"
    encoder = Encoder(model_dir, pooling=args.pooling, device=args.device)
    index = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    corpus = work / "corpus.jsonl"
    rows = read_jsonl(SCIFACT / "corpus.jsonl", args.docs)
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    queries = [q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl", 300)]
    print(f"indexing {len(rows)} SciFact documents into {index} with {label} ...")
    ingest_corpus(corpus, client=client, index=index, encoder=encoder, rejects=work / "r.jsonl")

    # The same encoder settings on both sides (the last --pooling / --device win).
    extra = ["--pooling", encoder.pooling, "--device", args.device]
    proc, gateway = start_gateway(settings, model_dir, work / "serve.log", *extra)
    try:
        import pytest  # wait_ready reports a failed start through pytest.fail

        try:
            wait_ready(proc, gateway, work / "serve.log")
        except pytest.fail.Exception as exc:
            raise SystemExit(str(exc)) from None
        direct = settings.url.rstrip("/")
        ids = [r["_id"] for r in rows]

        def doc(base: str) -> Callable[[int], None]:
            return lambda i: get_ok(f"{base}/{index}/_doc/{ids[i % len(ids)]}")

        def match(base: str) -> Callable[[int], None]:
            def run(i: int) -> None:
                body = {"size": 10, "query": {"match": {"text": queries[i % len(queries)]}}}
                get_ok(f"{base}/{index}/_search", "POST", body)

            return run

        knn = make_searcher("knn", client, index, encoder)

        def in_process(i: int) -> None:
            knn.search(queries[i % len(queries)], 10)

        def neural(i: int) -> None:
            query = queries[i % len(queries)]
            body = {"size": 10, "query": {"neural": {"vector": {"query_text": query, "k": 10}}}}
            get_ok(f"{gateway}/{index}/_search", "POST", body)

        results = {
            "pass-through GET _doc": paired(args.rounds, doc(direct), doc(gateway)),
            "pass-through match _search": paired(args.rounds, match(direct), match(gateway)),
            "neural vs in-process knn": paired(args.rounds, in_process, neural),
        }
    finally:
        stop(proc)
        if not args.keep:
            client.indices.delete(index=index, ignore_unavailable=True)

    lines = [
        f"Gateway latency, {args.rounds} rounds each, one request at a time "
        f"({label}, {len(rows)} docs, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs)",
        "",
        "| request | baseline p50 ms | gateway p50 ms | added p50 ms | paired diff p50 ms "
        "| ratio | baseline p95 | gateway p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['p50_a']:.2f} | {r['p50_b']:.2f} | {r['p50_added']:.2f} "
            f"| {r['median_paired_diff']:.2f} | {r['ratio']:.2f}x | {r['p95_a']:.2f} "
            f"| {r['p95_b']:.2f} |"
        )
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
