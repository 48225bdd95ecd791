"""Neural search through the gateway: a repeated text (query-vector cache hit) against a new
one (an encode), p50 over N requests each, with the same gateway, index and model, over one
kept-alive connection (as Dashboards and OpenSearch clients hold one).

    python benchmarks/bench_query_cache.py --url http://127.0.0.1:9700 --index scifact \\
        --model minilm --port 9705 [-n 60]

The index must have been built with the model (`dotbridge ingest --model minilm`). New texts
are SciFact's queries, each sent once; the repeated text is one of them, sent again and again
after a first (uncached) request. Prints p50 and p90 of each and the ratio of the p50s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Client:
    """One kept-alive connection, as Dashboards and any OpenSearch client hold one."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: dict) -> float:
        data = json.dumps(body).encode()
        began = time.perf_counter()
        self.conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - began
        if resp.status != 200:
            raise SystemExit(f"{path} answered {resp.status}")
        return elapsed


def neural(text: str) -> dict:
    return {
        "size": 10,
        "_source": False,
        "query": {"neural": {"vector": {"query_text": text, "k": 10}}},
    }


def queries(n: int) -> list[str]:
    from bridge.datasets import locate

    texts = []
    with (locate("scifact") / "queries.jsonl").open() as f:
        for line in f:
            texts.append(json.loads(line)["text"])
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < n + 2:
        raise SystemExit(
            f"SciFact has {len(distinct)} distinct queries: ask -n {len(distinct) - 2} or fewer."
        )
    return distinct[: n + 2]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the cluster (OpenSearch) URL")
    parser.add_argument("--index", required=True)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--port", type=int, default=9705, help="the gateway's port")
    parser.add_argument("-n", type=int, default=60, help="requests of each kind")
    args = parser.parse_args()
    texts = queries(args.n)
    gateway = f"http://127.0.0.1:{args.port}"
    cmd = [sys.executable, "-m", "bridge", "serve", "--port", str(args.port), "--url", args.url]
    cmd += ["--model", args.model, "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"{gateway}/_dotbridge", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start") from None
                time.sleep(1)
        search = f"/{args.index}/_search"
        client = Client(args.port)
        client.post(search, neural(texts[0]))  # warm-up: model, connections, the index's _meta
        repeated_text = texts[1]
        client.post(search, neural(repeated_text))  # its one encode
        new, repeated = [], []
        for text in texts[2:]:  # interleaved, so that both see the same load
            new.append(client.post(search, neural(text)))
            repeated.append(client.post(search, neural(repeated_text)))
        stats = json.load(urllib.request.urlopen(f"{gateway}/_dotbridge"))["models"][0]
    finally:
        proc.terminate()
        proc.wait(30)
    p50_new, p50_rep = statistics.median(new), statistics.median(repeated)
    print(f"neural search through the gateway, {args.model}, {len(new)} requests each")
    print("| text | p50 ms | p90 ms |")
    print("|---|---|---|")
    print(f"| new (encoded) | {p50_new * 1000:.1f} | {percentile(new, 0.9) * 1000:.1f} |")
    print(f"| repeated (cached) | {p50_rep * 1000:.1f} | {percentile(repeated, 0.9) * 1000:.1f} |")
    print(f"p50 ratio new / repeated: {p50_new / p50_rep:.1f}x")
    print(f"query cache: {stats['query_cache']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
