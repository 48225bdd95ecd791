"""The gateway under load: 50 clients mixing pass-through searches, neural searches and `_embed`
floods for a set time, against the same pass-through searches on a quiet gateway.

    python benchmarks/gateway_load.py [--url http://127.0.0.1:9200] [--model DIR] [--docs 200]
                                      [--seconds 60] [--quiet-seconds 30] [--pace 0.5]
                                      [--clients 50] [--direct N] [--neural-pace S]
                                      [--port PORT]
                                      [--out bench-results/gateway-load.json]

Fills an index with the first SciFact documents and starts `dotbridge serve` in front of the
cluster (default limits). The clients are 2/5 pass-through `match` searches, 3/10 neural, 3/10
`_embed` of 64 passages each. Pass-through and neural clients are people searching: each sends
one search every `--pace` / `--neural-pace` seconds (real traffic arrives at its own rate, it
does not wait for the gateway); `_embed` clients send their next request as soon as the last is
answered (a flood; `--neural-pace 0` makes the neural clients a flood too). The quiet run is
the pass-through clients alone, the loaded run all of them, so the p99 ratio is what the
model's traffic costs pass-through traffic (goal: within 3x). `--direct N` (10) more clients
send the same searches at the same pace straight to the cluster, in both runs: their ratio,
measured beside the gateway's, is what the load costs the cluster itself (on a machine that
runs the cluster too), so the difference is the gateway's own share. Also printed: one
client's searches alone (for reference), the share of neural searches that succeeded and their
p50/p99, the 429s each kind got, and every 5xx (those the gateway made itself, typed
`dotbridge_gateway_exception`, counted apart; goal: none).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

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


def run_clients(
    kind: str,
    count: int,
    target: tuple[str, list[dict]],
    start_at: float,
    seconds: float,
    pace: float,
) -> tuple[list[float], Counter, int]:
    """`count` clients of one kind, each a thread, in a process of their own (one per kind, so a
    flood's client-side work never delays another kind's timings), from wall time `start_at`
    for `seconds`. With a `pace`, each client sends one request every `pace` seconds (the
    offered load is the same in the quiet and the loaded run); with 0 it sends its next request
    as soon as the last one is answered (a flood). Latencies of the 200s, statuses, and the 5xx
    the gateway made itself."""
    url, bodies = target
    latencies: list[float] = []
    statuses: Counter = Counter()
    own_5xx = 0
    lock = threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    stop_at = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        nonlocal own_5xx
        i = n * 1000
        # Paced clients start spread over one pace, not all in the same instant.
        next_at = time.monotonic() + pace * n / count
        while time.monotonic() < stop_at:
            if pace:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += pace
            status, ms, data = post(url, bodies[i % len(bodies)])
            i += 1
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(ms)
                if status >= 500 and b"dotbridge_gateway_exception" in data:
                    own_5xx += 1
            if status == 429:
                time.sleep(0.05)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, own_5xx


def run_mix(
    counts: dict[str, int],
    targets: dict[str, tuple[str, list[dict]]],
    seconds: float,
    paces: dict[str, float],
) -> tuple[dict[str, list[float]], dict[str, Counter], Counter]:
    """Every kind's clients at once, one process per kind (started fresh, not forked from a
    process holding torch's threads), all beginning at the same instant."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(counts), mp_context=spawn) as pool:
        start_at = time.time() + 10.0  # every process imported and waiting by then
        futures = {
            kind: pool.submit(
                run_clients, kind, count, targets[kind], start_at, seconds, paces.get(kind, 0.0)
            )
            for kind, count in counts.items()
        }
        answers = {kind: future.result() for kind, future in futures.items()}
    latencies = {kind: answer[0] for kind, answer in answers.items()}
    statuses = {kind: answer[1] for kind, answer in answers.items()}
    own_5xx = Counter({kind: answer[2] for kind, answer in answers.items() if answer[2]})
    return latencies, statuses, own_5xx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--model", help="Model directory (default: packaged all-MiniLM-L6-v2).")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--quiet-requests",
        type=int,
        default=300,
        help="Searches one client sends alone first, for reference (default 300).",
    )
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=30.0,
        help="Seconds of the pass-through clients alone, the quiet run (default 30).",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=0.5,
        help="Seconds between one pass-through client's searches, in both runs (default 0.5).",
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--neural-pace",
        type=float,
        default=0.5,
        help="Seconds between one neural client's searches (default 0.5; 0: a flood).",
    )
    parser.add_argument(
        "--direct",
        type=int,
        default=10,
        help="Pass-through clients straight to the cluster, beside the others (default 10).",
    )
    parser.add_argument(
        "--encoder-nice",
        type=int,
        default=None,
        help="`serve --encoder-nice` for this run (default: serve's own default).",
    )
    parser.add_argument(
        "--passage-chunk",
        type=int,
        default=None,
        help="`serve --passage-chunk` for this run (default: serve's own default).",
    )
    parser.add_argument("--port", type=int, help="The gateway's port (default: a free one).")
    parser.add_argument("--out", type=Path, default=Path("bench-results/gateway-load.json"))
    args = parser.parse_args()

    from bridge.client import connect
    from bridge.config import ConnectionSettings, minilm_model_dir
    from bridge.encoder import Encoder
    from ingest.pipeline import ingest_corpus
    from tests.gateway_fixtures import SCIFACT, read_jsonl, start_gateway, stop, wait_ready

    mix = ["pass-through"] * 4 + ["neural"] * 3 + ["_embed"] * 3
    roles = [mix[n % len(mix)] for n in range(args.clients)]
    counts = {kind: roles.count(kind) for kind in dict.fromkeys(mix)}
    if args.direct:
        counts["direct"] = args.direct
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
        settings,
        model_dir,
        log,
        "--pooling",
        encoder.pooling,
        "--device",
        "cpu",
        *(["--encoder-nice", str(args.encoder_nice)] if args.encoder_nice is not None else []),
        *(["--passage-chunk", str(args.passage_chunk)] if args.passage_chunk else []),
        port=args.port,
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

        plain = [{"size": 10, "query": {"match": {"text": text}}} for text in queries]
        neural = [
            {"size": 10, "query": {"neural": {"vector": {"query_text": text, "k": 10}}}}
            for text in queries
        ]
        embed = [
            {"input": passages[start : start + 64]}
            for start in range(0, max(1, len(passages) - 64), 8)
        ]
        direct_url = f"{settings.url.split(',')[0].rstrip('/')}/{index}/_search"
        targets = {
            "direct": (direct_url, plain),
            "pass-through": (search_url, plain),
            "neural": (search_url, neural),
            "_embed": (embed_url, embed),
        }

        for i in range(20):  # warm both paths
            post(search_url, plain[i])
            post(search_url, neural[i])
        single = [post(search_url, plain[i % len(plain)])[1] for i in range(args.quiet_requests)]

        print(
            f"quiet: {counts['pass-through']} pass-through clients (and {args.direct} straight to "
            f"the cluster) alone, one search each every "
            f"{args.pace:g} s, for {args.quiet_seconds:g} s ...",
            flush=True,
        )
        paces = {"pass-through": args.pace, "direct": args.pace, "neural": args.neural_pace}
        quiet_counts = {kind: counts[kind] for kind in ("pass-through", "direct") if kind in counts}
        quiet_all = run_mix(quiet_counts, targets, args.quiet_seconds, paces)[0]
        quiet = quiet_all["pass-through"]
        print(f"loaded: {args.clients} clients for {args.seconds:g} s ...", flush=True)
        latencies, statuses, own_5xx = run_mix(counts, targets, args.seconds, paces)
    finally:
        stop(proc)
        client.indices.delete(index=index, ignore_unavailable=True)

    loaded = latencies["pass-through"]
    neural_all = sum(statuses["neural"].values())
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        "pass_through_clients": roles.count("pass-through"),
        "pace_s": args.pace,
        "neural_pace_s": args.neural_pace,
        "encoder_nice": args.encoder_nice,
        "passage_chunk": args.passage_chunk,
        "pass_through_single_client_p50_ms": statistics.median(single),
        "pass_through_single_client_p99_ms": p(single, 0.99),
        "pass_through_quiet_p50_ms": statistics.median(quiet),
        "pass_through_quiet_p99_ms": p(quiet, 0.99),
        "pass_through_loaded_p50_ms": statistics.median(loaded) if loaded else None,
        "pass_through_loaded_p99_ms": p(loaded, 0.99),
        "p99_ratio": p(loaded, 0.99) / p(quiet, 0.99),
        "neural_success": statuses["neural"][200] / neural_all if neural_all else None,
        "neural_p50_ms": statistics.median(latencies["neural"]) if latencies["neural"] else None,
        "neural_p99_ms": p(latencies["neural"], 0.99),
        "statuses": {k: dict(v) for k, v in statuses.items()},
        "429": {k: v[429] for k, v in statuses.items()},
        "5xx": {k: sum(c for s, c in v.items() if s >= 500) for k, v in statuses.items()},
        "5xx_from_the_gateway": dict(own_5xx),
        "no_answer": {k: v[0] for k, v in statuses.items()},
    }
    if args.direct:
        direct_quiet, direct_loaded = quiet_all["direct"], latencies["direct"]
        results["direct_clients"] = args.direct
        results["direct_quiet_p99_ms"] = p(direct_quiet, 0.99)
        results["direct_loaded_p99_ms"] = p(direct_loaded, 0.99)
        results["direct_p99_ratio"] = p(direct_loaded, 0.99) / p(direct_quiet, 0.99)
    print(
        f"one client alone: p50 {results['pass_through_single_client_p50_ms']:.1f} ms, p99 "
        f"{results['pass_through_single_client_p99_ms']:.1f} ms"
    )
    print(
        f"pass-through p99: quiet {results['pass_through_quiet_p99_ms']:.1f} ms, loaded "
        f"{results['pass_through_loaded_p99_ms']:.1f} ms, ratio {results['p99_ratio']:.2f}x "
        f"(p50 {results['pass_through_quiet_p50_ms']:.1f} -> "
        f"{results['pass_through_loaded_p50_ms'] or float('nan'):.1f} ms)"
    )
    if args.direct:
        print(
            f"the same searches straight to the cluster ({args.direct} clients), p99: quiet "
            f"{results['direct_quiet_p99_ms']:.1f} ms, loaded "
            f"{results['direct_loaded_p99_ms']:.1f} ms, ratio {results['direct_p99_ratio']:.2f}x"
        )
    print(
        f"neural: {statuses['neural'][200]}/{neural_all} succeeded "
        f"({(results['neural_success'] or 0) * 100:.1f}%), p50 "
        f"{results['neural_p50_ms'] or float('nan'):.1f} ms, p99 {results['neural_p99_ms']:.1f} ms"
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
