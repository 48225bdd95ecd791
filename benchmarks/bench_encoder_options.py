"""What pays on this CPU: batch size, threads, spinning, graph fusion; where a query's time goes.

    python benchmarks/bench_encoder_options.py [--n 256] [--queries 100] [--repeats 3]
                                               [--out bench-results/encoder-options.json]

all-MiniLM-L6-v2 on SciFact passages and queries, every variant through dotbridge's Encoder (the
ONNX variants swap its session). Rounds are interleaved, medians reported:
  1. batch size 1..128 for torch, ONNX float32 and ONNX int8 (passages/s);
  2. intra-op threads 1/2 for torch and ONNX, ONNX's spin-waiting on/off (passages/s, query p50);
  3. the plain export against the fused graph, at each ONNX Runtime optimisation level;
  4. one query's time split into tokenizer, forward pass and the rest (batching, pooling).
Prints Markdown, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_encoder import DEFAULT_CORPUS, percentile, read_jsonl, timed  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from bridge.encoder.onnx_runtime import OnnxForward, trace  # noqa: E402
from tests.model_fixtures import minilm_model_dir  # noqa: E402

BATCH_SIZES = (1, 4, 8, 16, 32, 64, 128)


def interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int, measure: Callable[[Callable], Any]
) -> dict[str, list[Any]]:
    """Each variant once per round, rounds one after the other: load falls on all alike."""
    out: dict[str, list[Any]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, setup in variants.items():
            out[name].append(measure(setup))
    return out


def batch_sizes(encoders: dict[str, Encoder], passages: list[str], repeats: int) -> list[dict]:
    variants = {
        f"{label}|{bs}": (lambda e=enc, b=bs: e.encode_passages(passages, batch_size=b))
        for label, enc in encoders.items()
        for bs in BATCH_SIZES
    }
    seconds = interleaved(variants, repeats, timed)
    rows = []
    for key, values in seconds.items():
        label, bs = key.split("|")
        rows.append(
            {
                "runtime": label,
                "batch_size": int(bs),
                "passages_per_s": len(passages) / statistics.median(values),
            }
        )
    return rows


def query_latencies(encode: Callable[[str], Any], queries: list[str]) -> list[float]:
    return [1000 * timed(lambda q=q: encode(q)) for q in queries]


def sessions(
    encoders: dict[str, Encoder],
    graphs: dict[str, Path],
    passages: list[str],
    queries: list[str],
    repeats: int,
) -> list[dict]:
    """Threads and spinning for ONNX; threads for torch (torch.set_num_threads is global)."""
    setups: dict[str, tuple[Encoder, Callable[[], None]]] = {}
    default_threads = torch.get_num_threads()
    for threads in (1, 2):
        setups[f"torch threads={threads}"] = (
            encoders["torch"],
            lambda t=threads: torch.set_num_threads(t),
        )
        for quant in ("float32", "int8"):
            for spin in (True, False):
                forward = OnnxForward(graphs[quant], threads=threads, spin=spin)
                enc = encoders[f"onnx {quant}"]
                setups[f"onnx {quant} threads={threads} spin={'on' if spin else 'off'}"] = (
                    enc,
                    lambda e=enc, f=forward: setattr(e, "_forward", f),
                )

    def measure(item: tuple[Encoder, Callable[[], None]]) -> tuple[float, list[float]]:
        enc, apply = item
        apply()
        for q in queries[:5]:
            enc.encode_queries([q])
        seconds = timed(lambda: enc.encode_passages(passages))
        return seconds, query_latencies(lambda q: enc.encode_queries([q]), queries)

    results = interleaved(setups, repeats, measure)
    torch.set_num_threads(default_threads)
    for quant in ("float32", "int8"):  # back to the Encoder's own session
        encoders[f"onnx {quant}"]._forward = OnnxForward(graphs[quant])
    rows = []
    for name, values in results.items():
        lat = [ms for _, lats in values for ms in lats]
        rows.append(
            {
                "variant": name,
                "passages_per_s": len(passages) / statistics.median(s for s, _ in values),
                "query_ms_p50": statistics.median(lat),
                "query_ms_p95": percentile(lat, 95),
            }
        )
    return rows


def graphs_and_levels(
    enc: Encoder, fused: Path, plain: Path, passages: list[str], queries: list[str], repeats: int
) -> list[dict]:
    setups = {
        f"{kind} level={level}": OnnxForward(path, level=level)
        for kind, path in (("plain export", plain), ("fused", fused))
        for level in ("basic", "extended", "all")
    }

    def measure(forward: OnnxForward) -> tuple[float, list[float]]:
        enc._forward = forward
        for q in queries[:5]:
            enc.encode_queries([q])
        seconds = timed(lambda: enc.encode_passages(passages))
        return seconds, query_latencies(lambda q: enc.encode_queries([q]), queries)

    results = interleaved(setups, repeats, measure)
    enc._forward = OnnxForward(fused)
    rows = []
    for name, values in results.items():
        lat = [ms for _, lats in values for ms in lats]
        rows.append(
            {
                "variant": name,
                "passages_per_s": len(passages) / statistics.median(s for s, _ in values),
                "query_ms_p50": statistics.median(lat),
            }
        )
    return rows


def breakdown(encoders: dict[str, Encoder], queries: list[str], repeats: int) -> list[dict]:
    """Median ms of a single query's tokenizer call, forward pass and whole encode_queries."""
    rows = []
    for label, enc in encoders.items():
        tok_ms, fwd_ms, total_ms, lengths = [], [], [], []
        for _ in range(repeats):
            for q in queries:
                started = time.perf_counter()
                tokens = enc.tokenizer(
                    [q],
                    truncation=True,
                    max_length=enc.query_max_length,
                    stride=0,
                    return_overflowing_tokens=True,
                    return_length=True,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )
                tok_ms.append(1000 * (time.perf_counter() - started))
                ids = np.asarray(tokens["input_ids"][:1], dtype=np.int64)
                mask = np.ones_like(ids)
                lengths.append(ids.shape[1])
                with torch.inference_mode():
                    fwd_ms.append(1000 * timed(lambda i=ids, m=mask, e=enc: e._forward(i, m)))
                total_ms.append(1000 * timed(lambda q=q, e=enc: e.encode_queries([q])))
        tok, fwd, total = (statistics.median(v) for v in (tok_ms, fwd_ms, total_ms))
        rows.append(
            {
                "runtime": label,
                "query_tokens_median": statistics.median(lengths),
                "tokenizer_ms": tok,
                "forward_ms": fwd,
                "encode_queries_ms": total,
                "rest_ms": total - tok - fwd,
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    out = ["Batch size (passages/s):", ""]
    runtimes = list(dict.fromkeys(r["runtime"] for r in result["batch_sizes"]))
    out.append("| batch | " + " | ".join(runtimes) + " |")
    out.append("|---:|" + "---:|" * len(runtimes))
    for bs in BATCH_SIZES:
        cells = [
            f"{r['passages_per_s']:.1f}"
            for name in runtimes
            for r in result["batch_sizes"]
            if r["runtime"] == name and r["batch_size"] == bs
        ]
        out.append(f"| {bs} | " + " | ".join(cells) + " |")
    out += ["", "Threads and spinning (batch 32):", ""]
    out += ["| variant | passages/s | query p50 ms | query p95 ms |", "|---|---:|---:|---:|"]
    for r in result["sessions"]:
        out.append(
            f"| {r['variant']} | {r['passages_per_s']:.1f} | {r['query_ms_p50']:.2f} "
            f"| {r['query_ms_p95']:.2f} |"
        )
    out += ["", "ONNX float32 graph and optimisation level:", ""]
    out += ["| variant | passages/s | query p50 ms |", "|---|---:|---:|"]
    for r in result["graphs"]:
        out.append(f"| {r['variant']} | {r['passages_per_s']:.1f} | {r['query_ms_p50']:.2f} |")
    out += ["", "One query (medians, ms):", ""]
    out += [
        "| runtime | tokens | tokenizer | forward | rest | encode_queries |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["breakdown"]:
        out.append(
            f"| {r['runtime']} | {r['query_tokens_median']:.0f} | {r['tokenizer_ms']:.2f} "
            f"| {r['forward_ms']:.2f} | {r['rest_ms']:.2f} | {r['encode_queries_ms']:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="passages per measurement")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=Path("bench-results/encoder-options.json"))
    parser.add_argument("--only", default="batch,sessions,breakdown,graphs")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))

    passages = read_jsonl(args.corpus, args.n, ("title", "text"))
    queries = read_jsonl(args.corpus.with_name("queries.jsonl"), args.queries, ("text",))
    model = minilm_model_dir()
    encoders = {
        "torch": Encoder(model, device="cpu"),
        "onnx float32": Encoder(model, runtime="onnx"),
        "onnx int8": Encoder(model, runtime="onnx", quantize="int8"),
    }
    graphs = {
        "float32": encoders["onnx float32"]._forward.path,
        "int8": encoders["onnx int8"]._forward.path,
    }
    for enc in encoders.values():
        enc.encode_passages(passages[:32])
    load_before = os.getloadavg()
    result: dict[str, Any] = {"n_passages": len(passages), "n_queries": len(queries)}

    def save(part: str) -> None:
        # After every part: a long sweep cut short still leaves what it measured.
        result["load_average_before"] = load_before
        result["load_average_after"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"{part} done, written: {args.out}", file=sys.stderr)

    if "batch" in parts:
        result["batch_sizes"] = batch_sizes(encoders, passages, args.repeats)
        save("batch sizes")
    if "sessions" in parts:
        result["sessions"] = sessions(encoders, graphs, passages, queries, args.repeats)
        save("sessions")
    if "breakdown" in parts:
        result["breakdown"] = breakdown(encoders, queries, args.repeats)
        save("breakdown")
    if "graphs" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "plain.onnx"
            trace(encoders["onnx float32"], plain)
            result["graphs"] = graphs_and_levels(
                encoders["onnx float32"], graphs["float32"], plain, passages, queries, args.repeats
            )
        save("graphs")
    print(
        markdown({k: result.get(k, []) for k in ("batch_sizes", "sessions", "graphs", "breakdown")})
    )


if __name__ == "__main__":
    main()
