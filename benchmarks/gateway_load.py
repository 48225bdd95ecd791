"""The gateway under load: 50 clients mixing pass-through searches, neural searches and `_embed`
floods for a set time, against the same pass-through searches on a quiet gateway.

    python benchmarks/gateway_load.py [--url http://127.0.0.1:9200] [--model DIR] [--docs 200]
                                      [--seconds 60] [--clients 50] [--port PORT]
                                      [--out bench-results/gateway-load.json]

Fills an index with the first SciFact documents, starts `dotbridge serve` in front of the
cluster (default limits), times pass-through `match` searches from one client on the quiet
gateway, then runs the mix (2/5 pass-through, 3/10 neural, 3/10 `_embed` of 64 passages each)
and prints: pass-through p50/p99 quiet and loaded and their ratio (goal: p99 within 3x), the
share of neural searches that succeeded, the 429s each kind got, and every 5xx (those the
gateway made itself, typed `dotbridge_gateway_exception`, are counted apart; goal: none).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from bridge.client import connect  # noqa: E402
from bridge.config import ConnectionSettings, minilm_model_dir  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from ingest.pipeline import ingest_corpus  # noqa: E402
from tests.gateway_fixtures import SCIFACT, read_jsonl, start_gateway, stop, wait_ready  # noqa: E402

HTTP = urllib3.PoolManager(maxsize=64, retries=False, timeout=urllib3.Timeout(total=120))


def post(url: str, body: dict) -> tuple[int, float, bytes]:
    began = time.perf_counter()
    try:
        resp = HTTP.request(
            "POST",
            url,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        status, data = resp.status, resp.data
    except urllib3.exceptions.HTTPError as exc:
        status, data = 0, str(exc).encode()
    return status, (time.perf_counter() - began) * 1000.0, data


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--model", help="Model directory (default: packaged all-MiniLM-L6-v2).")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quiet-requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--port", type=int, help="The gateway's port (default: a free one).")
    parser.add_argument("--out", type=Path, default=Path("bench-results/gateway-load.json"))
    args = parser.parse_args()

    settings = ConnectionSettings.from_env(url=args.url)
    client = connect(settings)
    model_dir = Path(args.model) if args.model else minilm_model_dir()
    encoder = Encoder(model_dir, device="cpu")
    index = f"bench-load-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    rows = read_jsonl(SCIFACT / "corpus.jsonl", args.docs)
    (work / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    queries = [q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl", 300)]
    passages = [f"{r['title']} {r['text']}" for r in rows]
    print(f"indexing {len(rows)} SciFact documents into {index} ...", flush=True)
    ingest_corpus(
        work / "corpus.jsonl", client=client, index=index, encoder=encoder, rejects=work / "r"
    )
    log = work / "serve.log"
    proc, gateway = start_gateway(
        settings, model_dir, log, "--pooling", encoder.pooling, "--device", "cpu", port=args.port
    )
    try:
        import pytest

        try:
            wait_ready(proc, gateway, log)
        except pytest.fail.Exception as exc:
            raise SystemExit(str(exc)) from None
        (model,) = json.loads(HTTP.request("GET", f"{gateway}/_dotbridge").data)["models"]
        embed_url = f"{gateway}/_dotbridge/models/{model['name']}/_embed"
        search_url = f"{gateway}/{index}/_search"

        def plain(i: int) -> dict:
            return {"size": 10, "query": {"match": {"text": queries[i % len(queries)]}}}

        def neural(i: int) -> dict:
            text = queries[i % len(queries)]
            return {"size": 10, "query": {"neural": {"vector": {"query_text": text, "k": 10}}}}

        def embed(i: int) -> dict:
            start = (i * 64) % max(1, len(passages) - 64)
            return {"input": passages[start : start + 64]}

        for i in range(20):  # warm both paths
            post(search_url, plain(i))
            post(search_url, neural(i))
        quiet = [post(search_url, plain(i))[1] for i in range(args.quiet_requests)]

        kinds = {"pass-through": (search_url, plain), "neural": (search_url, neural)}
        kinds["_embed"] = (embed_url, embed)
        mix = ["pass-through"] * 4 + ["neural"] * 3 + ["_embed"] * 3
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, Counter] = defaultdict(Counter)
        own_5xx: Counter = Counter()
        stop_at = time.monotonic() + args.seconds
        lock = threading.Lock()

        def client_loop(n: int) -> None:
            kind = mix[n % len(mix)]
            url, body = kinds[kind]
            i = n * 1000
            while time.monotonic() < stop_at:
                status, ms, data = post(url, body(i))
                i += 1
                with lock:
                    statuses[kind][status] += 1
                    if status == 200:
                        latencies[kind].append(ms)
                    if status >= 500 and b"dotbridge_gateway_exception" in data:
                        own_5xx[kind] += 1
                if status == 429:
                    time.sleep(0.05)

        print(f"{args.clients} clients for {args.seconds:g} s ...", flush=True)
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(proc)
        client.indices.delete(index=index, ignore_unavailable=True)

    loaded = latencies["pass-through"]
    neural_all = sum(statuses["neural"].values())
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        "pass_through_quiet_p50_ms": statistics.median(quiet),
        "pass_through_quiet_p99_ms": p(quiet, 0.99),
        "pass_through_loaded_p50_ms": statistics.median(loaded) if loaded else None,
        "pass_through_loaded_p99_ms": p(loaded, 0.99),
        "p99_ratio": p(loaded, 0.99) / p(quiet, 0.99),
        "neural_success": statuses["neural"][200] / neural_all if neural_all else None,
        "neural_p50_ms": statistics.median(latencies["neural"]) if latencies["neural"] else None,
        "statuses": {k: dict(v) for k, v in statuses.items()},
        "429": {k: v[429] for k, v in statuses.items()},
        "5xx": {k: sum(c for s, c in v.items() if s >= 500) for k, v in statuses.items()},
        "5xx_from_the_gateway": dict(own_5xx),
        "no_answer": {k: v[0] for k, v in statuses.items()},
    }
    print(
        f"pass-through p99: quiet {results['pass_through_quiet_p99_ms']:.1f} ms, loaded "
        f"{results['pass_through_loaded_p99_ms']:.1f} ms, ratio {results['p99_ratio']:.2f}x "
        f"(p50 {results['pass_through_quiet_p50_ms']:.1f} -> "
        f"{results['pass_through_loaded_p50_ms'] or float('nan'):.1f} ms)"
    )
    print(
        f"neural: {statuses['neural'][200]}/{neural_all} succeeded "
        f"({(results['neural_success'] or 0) * 100:.1f}%), p50 {results['neural_p50_ms']} ms"
    )
    print(
        f"429s: {results['429']}; 5xx: {results['5xx']}; "
        f"5xx made by the gateway: {results['5xx_from_the_gateway']}; "
        f"no answer: {results['no_answer']}"
    )
    print(f"statuses: {results['statuses']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
