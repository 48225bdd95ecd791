"""The speed targets of issue 13, measured in one run: `make bench` prints the table.

    python benchmarks/targets.py [--docs 2000] [--queries 300] [--port 9282]
                                 [--out benchmarks/results/targets.json] [--readme docs/speed.md]

With all-MiniLM-L6-v2 on the CPU (HF_HUB_OFFLINE=1) against OPENSEARCH_URL's cluster, else a
local node started on --port (and stopped afterwards), on SciFact:

1. query encode p50, one query at a time: torch float32, ONNX float32, ONNX int8 (interleaved
   per query), with ONNX float32's largest difference from torch on the same queries (<= 1e-4);
2. ingest of --docs passages: the seed's one-by-one torch loop (bridge.bench.naive_ingest), then
   dotbridge's pipeline with torch, ONNX float32 and ONNX int8; throughput ratios to the loop;
3. search p50 of bm25, knn, hybrid (RRF) and rerank (on the server) over the judged test queries,
   with the query runtime `dotbridge search` uses by default (torch) and with ONNX float32
   (interleaved per query), against the bounds knn p50 + 3 ms and bm25 p50 + encode p50 + 5 ms;
4. int8 quality from --int8-quality, the JSON of benchmarks/int8_quality.py (measured apart);
5. GPU encode from --gpu-json (benchmarks/gpu.sh's gpu.json) where one was measured on a GPU.

Prints the targets table (what, first release, target, runtime, measured, met?), writes the
summary as JSON, and with --readme puts the table between `<!-- targets:start -->` and
`<!-- targets:end -->`. Medians throughout; ratios come from this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.harness import cosines, local_node, markdown_table, write_block  # noqa: E402
from bridge import bench  # noqa: E402
from bridge.backends import backend_of  # noqa: E402
from tests.ingest_helpers import datasets_dir  # noqa: E402

DEFAULT_DATASET = datasets_dir() / "scifact"
RESULTS = REPO / "benchmarks" / "results"
README_BLOCK = "targets"
DEFAULT_DOCS = 2000
DEFAULT_QUERIES = 300  # SciFact's judged test queries: all of them
NO_GPU = "not measured here: no GPU machine lent; run benchmarks/gpu.sh on one"
NO_INT8_QUALITY = "not measured in this run: see docs/evaluation.md"

# The encoders compared: (label, runtime, quantize). The first is what `dotbridge search` and
# `dotbridge ingest` use by default on a float32 index, and the seed loop's runtime.
RUNTIMES = (
    ("torch float32", "torch", "none"),
    ("onnx float32", "onnx", "none"),
    ("onnx int8", "onnx", "int8"),
)
DEFAULT_RUNTIME = "torch float32"
EXACT = ("torch float32", "onnx float32")
SEARCH_RUNTIMES = EXACT  # int8 vectors need an int8 index: a different model
SEARCH_MODES = ("bm25", "knn", "hybrid (rrf)", "rerank (server)")  # labels of bench.LATENCY_MODES
DENSE_MODES = ("rerank", "knn", "hybrid")
QUALITY_COLLECTIONS = ("scifact", "nfcorpus")

# Issue 13's table: the first release's figures and the targets.
FIRST_RELEASE = {
    "encode": "14.6 ms",
    "ingest": "1.12x",
    "int8": "-",
    "hybrid": "38.2 ms (10.3x bm25)",
    "rerank": "26.1 ms",
    "gpu": "not measured",
}
ENCODE_TARGET_MS = 5.0
INGEST_TARGET_EXACT = 1.5
INGEST_TARGET_INT8 = 3.0
INT8_MAX_NDCG_DROP = 0.005
HYBRID_SLACK_MS = 3.0
RERANK_SLACK_MS = 5.0
GPU_TARGET = 10_000.0


# ---- measuring -----------------------------------------------------------------------------


def load_encoders(model: str | Path, batch_size: int) -> dict[str, Any]:
    """Every runtime's Encoder on the CPU (ONNX exports are made and cached here, before timing)."""
    from bridge.encoder import Encoder

    return {
        label: Encoder(
            model, runtime=runtime, quantize=quantize, device="cpu", batch_size=batch_size
        )
        for label, runtime, quantize in RUNTIMES
    }


def summary(times_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(times_ms),
        "p50_ms": statistics.median(times_ms),
        "p95_ms": bench.percentile(times_ms, 95),
    }


def measure_encode(encoders: dict[str, Any], queries: Sequence[str], warmup: int) -> dict:
    """Single-query latency per runtime, interleaved per query so that load falls on all alike;
    ONNX float32's vectors are checked against torch's on the very calls that were timed."""
    for enc in encoders.values():
        for q in queries[:warmup]:
            enc.encode_queries([q])
    times: dict[str, list[float]] = {label: [] for label in encoders}
    vectors: dict[str, list[np.ndarray]] = {label: [] for label in encoders}
    for q in queries:
        for label, enc in encoders.items():
            started = time.perf_counter()
            vec = enc.encode_queries([q])
            times[label].append((time.perf_counter() - started) * 1000.0)
            vectors[label].append(vec[0])
    torch_vectors = np.stack(vectors[DEFAULT_RUNTIME])
    return {
        "runtimes": {label: summary(t) for label, t in times.items()},
        "onnx_float32_vs_torch_max_abs_diff": float(
            np.abs(np.stack(vectors["onnx float32"]) - torch_vectors).max()
        ),
        "int8_cosine_to_torch_min": float(
            cosines(np.stack(vectors["onnx int8"]), torch_vectors).min()
        ),
    }


def measure_ingest(
    client: Any, encoders: dict[str, Any], corpus: Path, docs: int, tag: str
) -> tuple[dict, str]:
    """The seed's loop, then the pipeline with each runtime, on the same records.

    Returns the timings and the name of the torch pipeline's index, kept for the searches.
    """
    records = bench.good_records(corpus, docs)
    for enc in encoders.values():  # warm-up: threads, allocator, ONNX sessions
        enc.encode_passages([r.passage for r in records[:8]])
    timings: dict[str, Any] = {}
    naive_index = f"bench-targets-naive-{tag}"
    try:
        log(f"naive one-by-one torch ingest of {len(records)} docs")
        naive = bench.naive_ingest(client, naive_index, records, encoders[DEFAULT_RUNTIME])
    finally:
        client.indices.delete(index=naive_index, ignore_unavailable=True)
    timings["seed loop (torch one-by-one)"] = naive.as_dict()
    search_index = ""
    for label in encoders:
        index = f"bench-targets-{label.replace(' ', '-')}-{tag}"
        log(f"pipeline ingest with {label}")
        try:
            piped = bench.pipeline_ingest(client, index, corpus, docs, encoders[label])
        except BaseException:
            client.indices.delete(index=index, ignore_unavailable=True)
            raise
        if label == DEFAULT_RUNTIME:
            search_index = index
        else:
            client.indices.delete(index=index, ignore_unavailable=True)
        timings[f"pipeline {label}"] = {
            **piped.as_dict(),
            "vs_seed_loop": piped.docs_per_s / naive.docs_per_s,
        }
    return {"docs": len(records), "timings": timings}, search_index


def measure_search(
    client: Any, index: str, encoders: dict[str, Any], queries: Sequence[str], warmup: int
) -> dict:
    """p50 of each mode with each exact runtime, one query at a time, interleaved per query."""
    from bridge.search import make_searcher

    options = {label: (mode, opts) for label, mode, opts in bench.LATENCY_MODES}
    searchers: dict[tuple[str, str], Any] = {}
    for label in SEARCH_MODES:
        mode, opts = options[label]
        runtimes = ("-",) if mode == "bm25" else SEARCH_RUNTIMES
        for runtime in runtimes:
            encoder = None if mode == "bm25" else encoders[runtime]
            searchers[(label, runtime)] = make_searcher(mode, client, index, encoder, **opts)
    for searcher in searchers.values():
        for q in queries[:warmup]:
            searcher.search(q, k=10)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in searchers}
    for q in queries:
        for key, searcher in searchers.items():
            started = time.perf_counter()
            searcher.search(q, k=10)
            times[key].append((time.perf_counter() - started) * 1000.0)
    out: dict[str, dict[str, Any]] = {}
    for (label, runtime), values in times.items():
        out.setdefault(label.split(" ")[0], {})[runtime] = summary(values)
    return out


def log(message: str) -> None:
    print(f"[targets {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(
    client: Any,
    model: str | Path,
    *,
    corpus: Path,
    queries: Sequence[str],
    docs: int,
    model_name: str | None = None,
    batch_size: int = 64,
    warmup: int = 10,
) -> dict[str, Any]:
    """Every measured row of the table, in one run on one machine (a dict that is JSON)."""
    import onnxruntime
    import torch

    load = [os.getloadavg()[0]]
    tag = uuid.uuid4().hex[:8]
    log("loading the encoders (torch, ONNX float32, ONNX int8)")
    encoders = load_encoders(model, batch_size)
    log(f"query encode over {len(queries)} queries")
    encode = measure_encode(encoders, queries, warmup)
    load.append(os.getloadavg()[0])
    ingest, index = measure_ingest(client, encoders, corpus, docs, tag)
    load.append(os.getloadavg()[0])
    try:
        log(f"search latency over {len(queries)} queries")
        search = measure_search(client, index, encoders, queries, warmup)
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
    load.append(os.getloadavg()[0])
    backend = backend_of(client)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime": onnxruntime.__version__,
            "engine": f"{backend.product} {backend.version(client)}",
            "load_avg_1m": load,
        },
        "model": model_name or str(model),
        "corpus": str(corpus),
        "queries": len(queries),
        "batch_size": batch_size,
        "encode": encode,
        "ingest": ingest,
        "search": search,
    }


# ---- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the targets table; `met` is None where nothing decides it."""

    what: str
    first_release: str
    target: str
    runtime: str
    measured: str
    met: bool | None
    note: str = ""

    def verdict(self) -> str:
        word = {True: "yes", False: "no", None: "-"}[self.met]
        return f"{word} ({self.note})" if self.note else word


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def encode_rows(result: dict[str, Any]) -> list[Row]:
    enc = result["encode"]
    diff = enc["onnx_float32_vs_torch_max_abs_diff"]
    exact_onnx = diff <= 1e-4
    rows = []
    for label, _, _ in RUNTIMES:
        p50 = enc["runtimes"][label]["p50_ms"]
        if label in EXACT:
            met: bool | None = p50 <= ENCODE_TARGET_MS
            note = ""
            if label == "onnx float32":
                note = f"max abs diff to torch {diff:.1e}"
                if not exact_onnx:  # correctness first: a fast wrong vector meets nothing
                    met, note = False, f"not exact: max abs diff to torch {diff:.1e} > 1e-4"
        else:
            met = None
            cosine = enc["int8_cosine_to_torch_min"]
            note = f"information only, not exact: min cosine to torch {cosine:.4f}"
        rows.append(
            Row(
                "query encode p50, MiniLM, CPU",
                FIRST_RELEASE["encode"],
                f"<= {ENCODE_TARGET_MS:g} ms (float32, exact)",
                label,
                _ms(p50),
                met,
                note,
            )
        )
    return rows


def ingest_rows(result: dict[str, Any]) -> list[Row]:
    ing = result["ingest"]
    seed = ing["timings"]["seed loop (torch one-by-one)"]
    rows = []
    for label, _, quantize in RUNTIMES:
        t = ing["timings"][f"pipeline {label}"]
        target = INGEST_TARGET_INT8 if quantize == "int8" else INGEST_TARGET_EXACT
        rows.append(
            Row(
                f"ingest vs the seed's one-by-one torch loop, CPU, MiniLM ({ing['docs']} docs)",
                FIRST_RELEASE["ingest"],
                f">= {target:g}x" + (" with int8" if quantize == "int8" else " exact float32"),
                f"pipeline {label}",
                f"{t['vs_seed_loop']:.2f}x ({t['docs_per_s']:.1f} vs {seed['docs_per_s']:.1f} "
                "docs/s)",
                t["vs_seed_loop"] >= target,
            )
        )
    return rows


def search_rows(result: dict[str, Any]) -> list[Row]:
    s = result["search"]
    bm25 = s["bm25"]["-"]["p50_ms"]
    rows = []
    for runtime in SEARCH_RUNTIMES:
        knn, hybrid = s["knn"][runtime]["p50_ms"], s["hybrid"][runtime]["p50_ms"]
        bound = knn + HYBRID_SLACK_MS
        rows.append(
            Row(
                "hybrid p50",
                FIRST_RELEASE["hybrid"],
                f"<= knn p50 + {HYBRID_SLACK_MS:g} ms",
                _query_runtime(runtime),
                f"{_ms(hybrid)} ({hybrid / bm25:.1f}x bm25)",
                hybrid <= bound,
                f"bound {_ms(bound)}: knn {_ms(knn)}",
            )
        )
    for runtime in SEARCH_RUNTIMES:
        rerank = s["rerank"][runtime]["p50_ms"]
        encode = result["encode"]["runtimes"][runtime]["p50_ms"]
        bound = bm25 + encode + RERANK_SLACK_MS
        rows.append(
            Row(
                "rerank on the server p50",
                FIRST_RELEASE["rerank"],
                f"<= bm25 p50 + query encode p50 + {RERANK_SLACK_MS:g} ms",
                _query_runtime(runtime),
                _ms(rerank),
                rerank <= bound,
                f"bound {_ms(bound)}: bm25 {_ms(bm25)}, encode {_ms(encode)}",
            )
        )
    return rows


def _query_runtime(runtime: str) -> str:
    suffix = " (`dotbridge search`'s default)" if runtime == DEFAULT_RUNTIME else ""
    return f"queries by {runtime}{suffix}"


def int8_quality_row(quality: list[dict[str, Any]] | None, source: str) -> Row:
    """From benchmarks/int8_quality.py's JSON: per collection, `{"collection": name,
    "ndcg@10": {mode: {"float32": x, "int8": y}}, ...}`, measured apart (hours on this CPU)."""
    what = "int8 quality cost"
    target = f"nDCG@10 within {INT8_MAX_NDCG_DROP:g} of float32"
    target += " on SciFact and NFCorpus, every dense mode"
    if quality is None:
        return Row(what, FIRST_RELEASE["int8"], target, "onnx int8", NO_INT8_QUALITY, None)
    diffs = {
        (res["collection"].lower(), mode): pair["int8"] - pair["float32"]
        for res in quality
        for mode, pair in res["ndcg@10"].items()
        if mode in DENSE_MODES
    }
    missing = [f"{c} {m}" for c in QUALITY_COLLECTIONS for m in DENSE_MODES if (c, m) not in diffs]
    if not diffs:
        return Row(what, FIRST_RELEASE["int8"], target, "onnx int8", f"nothing in {source}", None)
    worst = max(diffs, key=lambda k: abs(diffs[k]))
    within = all(abs(d) <= INT8_MAX_NDCG_DROP for d in diffs.values())
    measured = (
        f"largest int8 - float32 {diffs[worst]:+.4f} ({' '.join(worst)}), over "
        f"{len(diffs)} collection x mode pairs, from {source}"
    )
    note = f"missing: {', '.join(missing)}" if missing else ""
    met = within if not missing or not within else None  # incomplete and within decides nothing
    return Row(what, FIRST_RELEASE["int8"], target, "onnx int8", measured, met, note)


def gpu_row(gpu: dict[str, Any] | None, source: str) -> Row:
    """From benchmarks/gpu.sh's gpu.json where one ran on a GPU; else says where to run it."""
    what = "GPU encode, seed architecture, 256 tokens"
    target = f">= {GPU_TARGET:,.0f} passages/s on an H100"
    if gpu is None or gpu.get("smoke") or gpu.get("environment", {}).get("device") != "cuda":
        return Row(what, FIRST_RELEASE["gpu"], target, "-", NO_GPU, None)
    from benchmarks.bench_gpu import _fastest

    best = _fastest(gpu["throughput"])
    card = gpu["environment"].get("gpu", "cuda")
    return Row(
        what,
        FIRST_RELEASE["gpu"],
        target,
        f"torch {best['dtype']}, batch {best['batch_size']}, {card}",
        f"{best['passages_per_s']:,.0f} passages/s (from {source})",
        best["passages_per_s"] >= GPU_TARGET,
    )


def target_rows(
    result: dict[str, Any],
    int8_quality: tuple[list[dict[str, Any]], str] | None = None,
    gpu: tuple[dict[str, Any], str] | None = None,
) -> list[Row]:
    """Issue 13's table, in its order, from one run's measurements and the files measured apart."""
    return [
        *encode_rows(result),
        *ingest_rows(result),
        int8_quality_row(*(int8_quality or (None, ""))),
        *search_rows(result),
        gpu_row(*(gpu or (None, ""))),
    ]


def caption(result: dict[str, Any], loaded: float = 1.5) -> str:
    """Where and how the table was measured, including how busy the machine was.

    The run itself keeps about one load unit per core busy (the encoder's threads, the node),
    so only a load average above `loaded` per core means other work shared the machine.
    """
    m = result["machine"]
    loads = m["load_avg_1m"]
    busy = max(loads) / (m["cpus"] or 1)
    ing = result["ingest"]
    options = [
        f"--{name} {value}"
        for name, value, default in (
            ("docs", ing["docs"], DEFAULT_DOCS),
            ("queries", result["queries"], DEFAULT_QUERIES),
        )
        if value != default
    ]
    command = " ".join(["python benchmarks/targets.py", *options])
    how = f"`make bench` (`{command}`)"
    if options:
        how = (
            f"`{command}` (what `make bench` runs, with fewer passages and queries than its "
            f"defaults of {DEFAULT_DOCS:,} and {DEFAULT_QUERIES})"
        )
    lines = [
        f"Measured by {how} on {result['date']}: "
        f"`{result['model']}` on the CPU ({m['cpus']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads, ONNX Runtime {m['onnxruntime']}), {m['engine']} on the "
        f"same machine; {ing['docs']} SciFact passages ingested (batch size "
        f"{result['batch_size']}), {result['queries']} SciFact test queries one at a time "
        "(k=10, interleaved across runtimes), medians.",
    ]
    moments = (
        "before the encode timing",
        "before the ingests",
        "before the searches",
        "at the end",
    )
    load_text = ", ".join(f"{x:.1f} {when}" for x, when in zip(loads, moments, strict=False))
    if busy >= loaded:
        lines.append(
            f"The machine was under load from other work during the run (1-minute load average "
            f"{load_text} on {m['cpus']} cores), so absolute times are inflated. Queries are "
            "interleaved, so their comparisons share the load; the seed loop and the pipelines "
            "run one after the other, so a change of load between them skews the ingest ratios."
        )
    else:
        lines.append(f"1-minute load average during the run: {load_text}.")
    return " ".join(lines)


def markdown(result: dict[str, Any], rows: Sequence[Row]) -> str:
    """The caption, the targets table (a group's what/first release/target written once), then
    the run's details: ingest timings and p50/p95 per query path."""
    header = ("what", "first release", "target", "runtime", "measured (median)", "met?")
    table, previous = [], ("", "", "")
    for r in rows:
        group = (r.what, r.first_release, r.target)
        same = 0  # leading cells equal to the row above are left blank
        while same < len(group) and group[same] == previous[same]:
            same += 1
        table.append(("",) * same + group[same:] + (r.runtime, r.measured, r.verdict()))
        previous = group
    return "\n\n".join([caption(result), markdown_table(header, table), details(result)]) + "\n"


def details(result: dict[str, Any]) -> str:
    """What the rows are computed from, from the same run."""
    ing = result["ingest"]
    ingest = [
        (
            method,
            f"{t['docs_per_s']:.1f}",
            f"{t['wall_s']:.1f}",
            f"{t['encode_s']:.1f}",
            f"{t['index_s']:.1f}",
            f"{t['vs_seed_loop']:.2f}x" if "vs_seed_loop" in t else "1.00x",
        )
        for method, t in ing["timings"].items()
    ]
    paths = [
        (f"query encode, {label}", f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}")
        for label, v in result["encode"]["runtimes"].items()
    ]
    for mode, by_runtime in result["search"].items():
        for runtime, v in by_runtime.items():
            name = mode if runtime == "-" else f"{mode}, queries by {runtime}"
            paths.append((name, f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}"))
    return "\n\n".join(
        [
            f"Ingest of {ing['docs']} passages, each method once:",
            markdown_table(
                ("method", "docs/s", "wall s", "encode s", "index s", "vs seed loop"), ingest
            ),
            f"One query at a time, {result['queries']} queries (k=10; rerank re-scores the BM25 "
            "top 100 on the server, hybrid fuses BM25 and k-NN top 100 by RRF):",
            markdown_table(("path", "p50 ms", "p95 ms"), paths),
        ]
    )


def read_json(path: Path | None) -> tuple[Any, str] | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")), _shown(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path} is not readable JSON ({exc}): fix or remove it.") from None


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


# ---- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster_client(port: int) -> Iterator[Any]:
    """OPENSEARCH_URL's cluster (OPENSEARCH_* settings) when set, else a local node on `port`."""
    from bridge.client import connect
    from bridge.config import ConnectionSettings

    if os.environ.get("OPENSEARCH_URL"):
        yield connect(ConnectionSettings.from_env())
        return
    log(f"starting a local OpenSearch node on port {port}")
    with local_node(port) as node:
        yield connect(ConnectionSettings(url=node.url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="SciFact passages")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="test queries timed")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--model", type=Path, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64, help="the pipeline's (CLI default)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--port", type=int, default=9282, help="local node, without OPENSEARCH_URL")
    parser.add_argument("--out", type=Path, default=RESULTS / "targets.json")
    parser.add_argument("--int8-quality", type=Path, default=RESULTS / "int8_quality.json")
    parser.add_argument("--gpu-json", type=Path, default=RESULTS / "gpu.json")
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: render a run's JSON (--out of an earlier run) again, e.g. after "
        "the int8 quality file is filled in",
    )
    args = parser.parse_args(argv)

    from bridge.config import MINILM, minilm_model_dir
    from bridge.evaluate import load_split

    if args.readme is not None and "<!-- targets:start -->" not in args.readme.read_text():
        raise SystemExit(f"{args.readme} has no <!-- targets:start --> marker: add the pair.")
    quality, gpu = read_json(args.int8_quality), read_json(args.gpu_json)
    if args.from_json is not None:
        run = read_json(args.from_json)
        if run is None:
            raise SystemExit(f"{args.from_json} does not exist: give the JSON of an earlier run.")
        result = run[0]
    else:
        data = load_split(args.dataset)
        queries = list(data.queries.values())[: args.queries]
        model = args.model or minilm_model_dir()
        model_name = str(args.model) if args.model else MINILM
        with cluster_client(args.port) as client:
            result = measure(
                client,
                model,
                corpus=data.corpus,
                queries=queries,
                docs=args.docs,
                model_name=model_name,
                batch_size=args.batch_size,
                warmup=args.warmup,
            )
    rows = target_rows(result, quality, gpu)
    result["rows"] = [r.__dict__ | {"verdict": r.verdict()} for r in rows]
    table = markdown(result, rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"written: {args.out}")
    if args.readme is not None:
        write_block(args.readme, README_BLOCK, table)
        log(f"written: the table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
