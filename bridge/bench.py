"""Benchmarks: ingest throughput against a naive baseline, and query latency per search mode.

Both sides of each comparison run in the same process on the same machine, so the ratios hold
even where the absolute numbers do not travel.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.backends import Client, backend_of
from bridge.indexes import IndexSpec, ensure_index
from ingest.readers import Record, read_records

if TYPE_CHECKING:
    from bridge.encoder import Encoder

log = logging.getLogger(__name__)

# (label, make_searcher mode, options): the query paths a user can choose between.
LATENCY_MODES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("bm25", "bm25", {}),
    ("rerank (server)", "rerank", {"candidates": 100, "rerank_on": "server"}),
    ("rerank (client)", "rerank", {"candidates": 100, "rerank_on": "client"}),
    ("knn", "knn", {}),
    ("hybrid (rrf)", "hybrid", {"fusion": "rrf", "depth": 100}),
)


@dataclass(frozen=True)
class IngestTiming:
    method: str
    docs: int
    wall_s: float
    encode_s: float
    index_s: float

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def wall_over_encode(self) -> float:
        return self.wall_s / self.encode_s if self.encode_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "docs_per_s": self.docs_per_s,
            "wall_over_encode": self.wall_over_encode,
        }


@dataclass(frozen=True)
class Latency:
    mode: str
    queries: int
    median_ms: float
    p95_ms: float
    mean_ms: float

    def as_dict(self, baseline: Latency | None = None) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        if baseline is not None:
            out["median_vs_bm25"] = self.median_ms / baseline.median_ms
            out["p95_vs_bm25"] = self.p95_ms / baseline.p95_ms
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency(label: str, search: Callable[[str], object], queries: Sequence[str]) -> Latency:
    """Time `search` on each query alone, one after the other."""
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        times.append((time.perf_counter() - started) * 1000.0)
    return Latency(
        label,
        len(times),
        statistics.median(times),
        percentile(times, 95),
        statistics.fmean(times),
    )


def good_records(corpus: str | Path, limit: int | None) -> list[Record]:
    return [r for r in read_records(corpus, limit=limit) if isinstance(r, Record)]


def naive_ingest(
    client: Client, index: str, records: Sequence[Record], encoder: Encoder
) -> IngestTiming:
    """The seed notebook's way: encode each passage alone, then one `helpers.bulk` of all.

    The documents are the pipeline's own (`document_source`), so both sides index the same bytes.
    """
    from ingest.bulk import document_source

    spec = IndexSpec.of(encoder)
    ensure_index(client, index, spec)
    started = time.perf_counter()
    vectors = [encoder.encode_passages([r.passage])[0] for r in records]
    encoded = time.perf_counter()
    actions = (
        {
            "_index": index,
            "_id": r.doc_id,
            "_source": document_source(r, spec.vector_field, v, run_id="naive"),
        }
        for r, v in zip(records, vectors, strict=True)
    )
    backend_of(client).bulk(client, actions)
    client.indices.refresh(index=index)  # as the pipeline does: searchable when it returns
    done = time.perf_counter()
    return IngestTiming("naive", len(records), done - started, encoded - started, done - encoded)


def pipeline_ingest(
    client: Client, index: str, corpus: str | Path, limit: int | None, encoder: Encoder
) -> IngestTiming:
    """dotbridge's way, on the same records as `good_records(corpus, limit)`."""
    from ingest.pipeline import ingest_corpus

    with tempfile.TemporaryDirectory() as tmp:
        stats = ingest_corpus(
            corpus,
            client=client,
            index=index,
            encoder=encoder,
            limit=limit,
            rejects=Path(tmp) / "rejects.jsonl",
            progress=False,
        )
    if stats.rejected:
        raise RuntimeError(f"the pipeline rejected {stats.rejected} records: {stats.summary()}")
    return IngestTiming("pipeline", stats.indexed, stats.wall_s, stats.encode_s, stats.index_s)


def run_bench(
    client: Client,
    encoder: Encoder,
    *,
    corpus: str | Path,
    queries: Sequence[str],
    limit: int | None = None,
    warmup: int = 5,
    keep: bool = False,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Ingest the corpus twice (naive, pipeline), then time every mode on the pipeline's index."""
    from bridge.search import make_searcher

    records = good_records(corpus, limit)
    load_before = os.getloadavg()[0]  # other work on the machine skews both sides alike
    tag = uuid.uuid4().hex[:8]
    naive_index, index = f"bench-naive-{tag}", f"bench-pipeline-{tag}"
    encoder.encode_passages([r.passage for r in records[:8]])  # warm-up: threads, allocator
    try:
        log.info("naive ingest of %d docs", len(records))
        naive = naive_ingest(client, naive_index, records, encoder)
        client.indices.delete(index=naive_index, ignore_unavailable=True)
        log.info("pipeline ingest of %d docs", len(records))
        piped = pipeline_ingest(client, index, corpus, limit, encoder)
        latencies = []
        for label, mode, options in LATENCY_MODES:
            searcher = make_searcher(mode, client, index, encoder=encoder, **options)
            for query in queries[:warmup]:
                searcher.search(query, k=10)
            log.info("latency of %s over %d queries", label, len(queries))
            latencies.append(latency(label, lambda q, s=searcher: s.search(q, k=10), queries))
    finally:
        client.indices.delete(index=naive_index, ignore_unavailable=True)
        if not keep:
            client.indices.delete(index=index, ignore_unavailable=True)
    base = latencies[0]
    import torch

    backend = backend_of(client)
    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": encoder.device,
            "engine": f"{backend.product} {backend.version(client)}",
            "load_avg_1m": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "model": model_name or encoder.model_id,
        "corpus": str(corpus),
        "ingest": {
            "docs": len(records),
            "batch_size": encoder.batch_size,
            "pipeline": piped.as_dict(),
            "naive": naive.as_dict(),
            "speedup": piped.docs_per_s / naive.docs_per_s if naive.docs_per_s else None,
        },
        "latency": {
            "index_docs": len(records),
            "k": 10,
            "modes": [lat.as_dict(base) for lat in latencies],
        },
    }


def bench_minilm(
    client: Client,
    *,
    dataset: str | Path,
    n_queries: int = 300,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    keep: bool = False,
    out: str | Path = "bench-results",
) -> tuple[str, list[Path]]:
    """What `dotbridge bench` does with all-MiniLM-L6-v2: the Markdown report and its files."""
    from bridge.config import MINILM, minilm_model_dir
    from bridge.datasets import resolve
    from bridge.encoder import Encoder
    from bridge.evaluate import load_split

    data = load_split(resolve(dataset))
    encoder = Encoder(minilm_model_dir(), device=device, batch_size=batch_size)
    result = run_bench(
        client,
        encoder,
        corpus=data.corpus,
        queries=list(data.queries.values())[:n_queries],
        limit=limit,
        keep=keep,
        model_name=MINILM,
    )
    return render_markdown(result), write_report(result, out)


def render_markdown(result: dict[str, Any]) -> str:
    """Two tables: ingest throughput (pipeline vs naive) and latency per mode."""
    ing = result["ingest"]
    lines = [
        f"Model: `{result['model']}` on {result['machine']['device']}, "
        f"{result['machine']['cpus']} CPUs, {result['machine']['engine']} "
        "on the same machine.",
        "",
        f"Ingest of {ing['docs']} SciFact documents (batch size {ing['batch_size']}):",
        "",
        "| method | docs/s | wall s | encode s | index s | wall / encode |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("pipeline", "naive"):
        t = ing[key]
        lines.append(
            f"| {key} | {t['docs_per_s']:.1f} | {t['wall_s']:.1f} | {t['encode_s']:.1f} | "
            f"{t['index_s']:.1f} | {t['wall_over_encode']:.2f} |"
        )
    lines += [
        "",
        f"Pipeline / naive throughput: **{ing['speedup']:.2f}x**.",
        "",
        f"Latency of one query at a time (k=10, {result['latency']['index_docs']} documents):",
        "",
        "| mode | queries | median ms | p95 ms | median / bm25 | p95 / bm25 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in result["latency"]["modes"]:
        lines.append(
            f"| {m['mode']} | {m['queries']} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | "
            f"{m['median_vs_bm25']:.2f} | {m['p95_vs_bm25']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """A PNG with the ingest throughput and the latency per mode side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ing = result["ingest"]
    modes = result["latency"]["modes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=(1, 2))
    names = ["pipeline", "naive"]
    encode = [ing[n]["encode_s"] for n in names]
    index = [ing[n]["index_s"] for n in names]
    rate = [ing[n]["docs_per_s"] for n in names]
    bars = left.bar(names, rate, color=["tab:blue", "tab:gray"])
    for bar, e, i in zip(bars, encode, index, strict=True):
        left.annotate(
            f"encode {e:.0f}s\nindex {i:.0f}s",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_ylabel("documents / s")
    left.set_title(f"Ingest, {ing['docs']} docs ({ing['speedup']:.1f}x)")
    left.margins(y=0.25)
    x = np.arange(len(modes))
    right.bar(x - 0.2, [m["median_ms"] for m in modes], 0.4, label="median")
    right.bar(x + 0.2, [m["p95_ms"] for m in modes], 0.4, label="p95")
    right.set_xticks(x, [m["mode"] for m in modes], fontsize=8)
    right.set_ylabel("ms per query")
    right.set_title(f"Query latency, one at a time ({modes[0]['queries']} queries)")
    right.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """bench.json, bench.md and bench.png under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md_path = out / "bench.md"
    md_path.write_text(render_markdown(result), encoding="utf-8")
    return [json_path, md_path, plot(result, out / "bench.png")]
