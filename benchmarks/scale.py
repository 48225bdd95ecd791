"""The scale curve: float32 and 4x (lucene sq) OpenSearch indexes of growing size.

    python benchmarks/scale.py --url http://127.0.0.1:9200 [--sizes 10000,100000,300000]
        [--source-index eval-minilm-scifact] [--out benchmarks/results/scale.json]

Vectors: the real all-MiniLM-L6-v2 vectors of the source index (SciFact's 5,183 passages, as
`dotbridge eval-all` fills it), then perturbed copies: copy j of passage i is
normalise(v_i + e), e ~ N(0, 0.02^2 I) seeded by (i, j) (cosine to v_i about 0.93), with the
passage's own title and text, so BM25 has real text too. Generated in blocks of 2,000 and never
held whole: this process's RSS must not grow with the size (measured, `rss_growth_mb`).

Per size and level: bulk indexing of precomputed vectors (docs/s, refresh off, one shard),
force-merge to one segment (s), memory and disk per vector from the segment file sizes,
p50/p99 of knn (k=10), rerank (BM25 top 100) and hybrid (RRF, depth 100) over 100 SciFact
queries (one query at a time, query vectors encoded beforehand), recall@10 of knn against
exact numpy over the whole index (streamed), and the same knn with ef_search 500 (a wider
candidate list than the default). What explains a miss goes to the JSON: how far below the
exact 10th score the wrong hits score, recall@10 counting near-ties, the exact top ten's spread
and how many real passages they copy. Prints the table and the 10k->largest ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge.client import connect  # noqa: E402
from bridge.compression import QueryVectors, documents, footprint  # noqa: E402
from bridge.config import ConnectionSettings, minilm_model_dir  # noqa: E402
from bridge.indexes import IndexOptions, ensure_index, read_spec  # noqa: E402
from bridge.search import make_searcher  # noqa: E402

BLOCK = 2000
SIGMA = 0.02
N_QUERIES = 100
EF_SEARCH = 500
NEAR = 0.01  # a miss scoring within this of the exact 10th is a near-tie (copies spread ~0.02)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def base_docs(client, index: str) -> tuple[list[dict], np.ndarray]:
    docs = list(documents(client, index))
    matrix = np.asarray([d.pop("vector") for d in docs], dtype=np.float32)
    return docs, matrix


def blocks(
    docs: list[dict], base: np.ndarray, size: int
) -> Iterator[tuple[list[dict], np.ndarray]]:
    """(documents, vectors) in blocks: the base first, then perturbed copies, seeded."""
    n = len(docs)
    for start in range(0, size, BLOCK):
        ids = range(start, min(size, start + BLOCK))
        rows = np.asarray([i % n for i in ids])
        vecs = base[rows].copy()
        copies = [i for i in ids if i >= n]
        if copies:
            rng = np.random.default_rng(start)
            noise = rng.normal(0.0, SIGMA, (len(copies), base.shape[1])).astype(np.float32)
            k = len(ids) - len(copies)
            vecs[k:] += noise
            vecs[k:] /= np.linalg.norm(vecs[k:], axis=1, keepdims=True)
        out = []
        for i, r in zip(ids, rows, strict=True):
            d = docs[r]
            out.append({"doc_id": f"s{i}", "title": d.get("title", ""), "text": d.get("text", "")})
        yield out, vecs


def fill(client, index: str, docs, base, size: int) -> dict:
    from bridge.backends import backend_of

    backend = backend_of(client)
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    before = rss_mb()
    peak = before
    took = 0.0
    for block_docs, vecs in blocks(docs, base, size):
        actions = [
            {"_index": index, "_id": d["doc_id"], **d, "vector": v.tolist()}
            for d, v in zip(block_docs, vecs, strict=True)
        ]
        began = time.perf_counter()
        backend.bulk(client, actions, chunk_size=500, request_timeout=600)
        took += time.perf_counter() - began
        peak = max(peak, rss_mb())
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": None}})
    client.indices.refresh(index=index)
    return {
        "docs_per_s": size / took,
        "index_s": took,
        "rss_before_mb": before,
        "rss_peak_mb": peak,
    }


def exact_top(docs, base, size: int, qvecs: np.ndarray, k: int = 10):
    """Exact top k per query over the generated vectors, streamed block by block: generated
    ids (row i is `s{i}`) and their float64 scores, best first."""
    best_s = np.full((len(qvecs), k), -np.inf)
    best_i = np.zeros((len(qvecs), k), dtype=np.int64)
    offset = 0
    for _, vecs in blocks(docs, base, size):
        scores = qvecs.astype(np.float64) @ vecs.astype(np.float64).T
        all_s = np.concatenate([best_s, scores], axis=1)
        all_i = np.concatenate(
            [best_i, offset + np.arange(len(vecs))[None, :].repeat(len(qvecs), 0)], axis=1
        )
        top = np.argsort(-all_s, axis=1)[:, :k]
        best_s = np.take_along_axis(all_s, top, 1)
        best_i = np.take_along_axis(all_i, top, 1)
        offset += len(vecs)
    return best_i, best_s


class Truth:
    """The exact top 10 per query, with what explains a miss: the 10th exact score, and how
    many distinct real passages the ten come from (a copy of passage p is row i, i % base)."""

    def __init__(self, docs, base, size: int, qvecs: np.ndarray) -> None:
        ids, scores = exact_top(docs, base, size, qvecs)
        self.sets = [{f"s{i}" for i in row} for row in ids]
        self.tenth = scores[:, 9]
        self.spread = scores[:, 0] - scores[:, 9]
        self.sources = [len({int(i) % len(docs) for i in row}) for row in ids]


def latencies(searcher, texts: list[str], k: int) -> tuple[float, float, list]:
    searcher.search(texts[0], k)
    times, results = [], []
    for text in texts:
        began = time.perf_counter()
        results.append(searcher.search(text, k))
        times.append(time.perf_counter() - began)
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), results


def recall(results: list, truth: list[set[str]]) -> float:
    hits = [{h.doc_id for h in r} for r in results]
    return float(np.mean([len(h & t) / 10 for h, t in zip(hits, truth, strict=True)]))


def misses(results: list, truth: Truth) -> dict:
    """How far below the exact 10th score the returned hits outside the exact top 10 score
    (their similarity as the search reports it, the exact dot product on float32 and 4x alike),
    and recall@10 counting a hit within NEAR of the 10th score as found."""
    gaps, near = [], []
    for hits, exact, tenth in zip(results, truth.sets, truth.tenth, strict=True):
        missed = [tenth - h.similarity for h in hits if h.doc_id not in exact]
        gaps.extend(missed)
        near.append(sum(1 for h in hits if h.doc_id in exact or h.similarity >= tenth - NEAR) / 10)
    return {
        "missed": len(gaps),
        "miss_gap_p50": float(np.median(gaps)) if gaps else 0.0,
        "miss_gap_max": float(np.max(gaps)) if gaps else 0.0,
        "recall10_near": float(np.mean(near)),
    }


def run_size(client, spec, docs, base, queries, texts, truth: Truth, size: int, level: str) -> dict:
    index = f"scale-{size}-{level}"
    client.indices.delete(index=index, ignore_unavailable=True)
    ensure_index(client, index, spec, IndexOptions(compression=level))
    row: dict = {"size": size, "compression": level}
    row.update(fill(client, index, docs, base, size))
    began = time.perf_counter()
    size_info = footprint(client, index)  # force-merges first
    row["forcemerge_s"] = time.perf_counter() - began
    row["memory_per_vector"] = size_info.memory_per_vector
    row["disk_per_vector"] = size_info.disk_per_vector
    row["files"] = size_info.files
    row["store_per_doc"] = size_info.store_per_doc
    for mode in ("knn", "rerank", "hybrid"):
        searcher = make_searcher(mode, client, index, queries, source=False, depth=100)
        p50, p99, results = latencies(searcher, texts, 10)
        row[f"{mode}_p50_ms"], row[f"{mode}_p99_ms"] = p50, p99
        if mode == "knn":
            row["recall10"] = recall(results, truth.sets)
            row.update(misses(results, truth))
            row["top10_spread_p50"] = float(np.median(truth.spread))
            row["top10_sources"] = float(np.mean(truth.sources))
    # The same knn with a wider candidate list, as `--ef-search 500` asks for it.
    searcher = make_searcher("knn", client, index, queries, source=False, ef_search=EF_SEARCH)
    p50, p99, results = latencies(searcher, texts, 10)
    row["knn_ef_p50_ms"], row["knn_ef_p99_ms"] = p50, p99
    row["recall10_ef"] = recall(results, truth.sets)
    client.indices.delete(index=index, ignore_unavailable=True)
    print(json.dumps({k: v for k, v in row.items() if k != "files"}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--levels", default="none,4x")
    parser.add_argument("--source-index", default="eval-minilm-scifact")
    parser.add_argument("--source-url", help="The cluster holding --source-index [default: --url].")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bridge.encoder import Encoder

    client = connect(ConnectionSettings(url=args.url))
    source = connect(ConnectionSettings(url=args.source_url)) if args.source_url else client
    spec = read_spec(source, args.source_index)
    docs, base = base_docs(source, args.source_index)
    print(f"{len(docs)} real vectors from {args.source_index}", flush=True)
    encoder = Encoder(minilm_model_dir(), device="cpu")
    queries = QueryVectors(encoder)
    from bridge.datasets import locate
    from bridge.evaluate import load_split

    split = load_split(locate("scifact"))
    texts = list(split.queries.values())[:N_QUERIES]
    qvecs = queries.encode_queries(texts)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        truth = Truth(docs, base, size, qvecs)
        for level in args.levels.split(","):
            rows.append(run_size(client, spec, docs, base, queries, texts, truth, size, level))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
    print(render(rows))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process {peak:.0f} MB")


COLUMNS = (
    ("docs_per_s", "index docs/s", "{:,.0f}"),
    ("forcemerge_s", "force-merge s", "{:.1f}"),
    ("memory_per_vector", "memory B/vec", "{:,.0f}"),
    ("disk_per_vector", "disk B/vec", "{:,.0f}"),
    ("knn_p50_ms", "knn p50", "{:.1f}"),
    ("knn_p99_ms", "knn p99", "{:.1f}"),
    ("rerank_p50_ms", "rerank p50", "{:.1f}"),
    ("rerank_p99_ms", "rerank p99", "{:.1f}"),
    ("hybrid_p50_ms", "hybrid p50", "{:.1f}"),
    ("hybrid_p99_ms", "hybrid p99", "{:.1f}"),
    ("recall10", "knn recall@10", "{:.3f}"),
    ("knn_ef_p50_ms", "knn ef500 p50", "{:.1f}"),
    ("recall10_ef", "knn ef500 recall@10", "{:.3f}"),
    ("rss_peak_mb", "bench RSS MB", "{:.0f}"),
)


def render(rows: list[dict]) -> str:
    lines = [
        "| vectors | compression | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---:|---|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = " | ".join(fmt.format(r[key]) if key in r else "–" for key, _, fmt in COLUMNS)
        lines.append(f"| {r['size']:,} | {r['compression']} | {cells} |")
    sizes = sorted({r["size"] for r in rows})
    if len(sizes) > 1:
        lines += [
            "",
            f"Growth {sizes[0]:,} -> {sizes[-1]:,} (x{sizes[-1] / sizes[0]:g} vectors):",
            "",
        ]
        lines.append("| compression | " + " | ".join(c[1] for c in COLUMNS) + " |")
        lines.append("|---|" + "---:|" * len(COLUMNS))
        for level in dict.fromkeys(r["compression"] for r in rows):
            first = next(r for r in rows if r["size"] == sizes[0] and r["compression"] == level)
            last = next(
                (r for r in rows if r["size"] == sizes[-1] and r["compression"] == level), None
            )
            if last is None:
                continue
            cells = " | ".join(
                f"x{last[key] / first[key]:.2f}" if first.get(key) else "–" for key, _, _ in COLUMNS
            )
            lines.append(f"| {level} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
