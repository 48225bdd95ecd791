"""`eval-all --compression`: the dense modes on each collection at each compression level, with
the index's own vector footprint and the query latency, as docs/compression.md's table.

Each collection is encoded once, into its float32 index (`eval-minilm-NAME`, through `ingest`,
or copied from another cluster's with `--vectors-from`); every compressed index is filled from
that index's stored vectors, so every level searches the very same vectors. Indexes are
force-merged to one segment before they are measured and searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.backends import backend_of
from bridge.evaluate import evaluate, hits_to_run, load_split, measures_for
from bridge.indexes import IndexOptions, ensure_index, read_spec
from bridge.search import make_searcher

if TYPE_CHECKING:
    from bridge.backends import Client
    from bridge.encoder import Encoder

log = logging.getLogger(__name__)

DENSE_MODES = ("knn", "hybrid")
DEPTH = 100  # knn k and hybrid's depth per side: nDCG@10 and R@100 are read from the run
# Lucene's vector files by what they hold (both engines write them alike).
GRAPH = (".vex",)
FLOAT = (".vec",)
QUANTISED = (".veq", ".veb")  # scalar (int8, int4, sq 7-bit), binary (bbq)
VECTOR_FILES = (".vec", ".vex", ".vem", ".veq", ".vemq", ".veb", ".vemb", ".vemf")


@dataclass(frozen=True)
class Footprint:
    """An index's vectors in bytes per vector: what the HNSW search keeps in memory (graph plus
    the vectors it walks: the quantised copy, else the floats) and every vector file on disk."""

    vectors: int
    memory_per_vector: float
    disk_per_vector: float
    files: dict[str, int]
    store_per_doc: float = 0.0  # the whole index on disk (text, _source, vectors) per document


def footprint(client: Client, index: str) -> Footprint:
    """Force-merge to one segment, then read the vector files' sizes the engine reports."""
    client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=3600)
    client.indices.refresh(index=index)
    backend = backend_of(client)
    stats = backend.request(
        client,
        "GET",
        f"/{index}/_stats/segments,store",
        params={"include_segment_file_sizes": "true"},
    )
    primaries = stats["indices"][index]["primaries"]
    n = int(client.count(index=index)["count"])
    store = int(primaries["store"]["size_in_bytes"]) / max(n, 1)
    if backend.product == "Elasticsearch":
        return _footprint_from_disk_usage(client, index, n, store)
    segments = primaries["segments"]
    files = {ext: int(v["size_in_bytes"]) for ext, v in segments.get("file_sizes", {}).items()}
    files = {("." + k.lstrip(".")): v for k, v in files.items()}
    walked = sum(files.get(e, 0) for e in QUANTISED) or sum(files.get(e, 0) for e in FLOAT)
    memory = walked + sum(files.get(e, 0) for e in GRAPH)
    disk = sum(files.get(e, 0) for e in VECTOR_FILES)
    return Footprint(n, memory / max(n, 1), disk / max(n, 1), files, store)


def _footprint_from_disk_usage(client: Client, index: str, n: int, store: float) -> Footprint:
    """Elasticsearch keeps segments under 1 GB in compound files, so `_stats` shows no vector
    files apart: `_disk_usage` gives the vector files' total per field, and the search's memory
    is that total less the float32 copy it does not walk (n x dims x 4 bytes) on a quantised
    field, the total itself on a float one."""
    usage = backend_of(client).request(
        client, "POST", f"/{index}/_disk_usage", params={"run_expensive_tasks": "true"}
    )
    fields = usage[index]["fields"]
    disk = sum(int(f.get("knn_vectors_in_bytes", 0)) for f in fields.values())
    spec = read_spec(client, index)
    floats = n * spec.dimension * 4 if spec is not None and spec.compression != "none" else 0
    files = {"knn_vectors": disk, "float32 vectors (n x dims x 4)": floats}
    return Footprint(n, (disk - floats) / max(n, 1), disk / max(n, 1), files, store)


def documents(client: Client, index: str, batch: int = 500) -> Iterator[dict]:
    """Every document of an index with its vector, by search_after on doc_id."""
    after = None
    while True:
        body: dict[str, Any] = {"size": batch, "sort": [{"doc_id": "asc"}], "_source": True}
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body)["hits"]["hits"]
        if not hits:
            return
        for h in hits:
            yield {"_id": h["_id"], **h["_source"]}
        after = hits[-1]["sort"]


def copy_index(
    source: Client, source_index: str, target: Client, index: str, compression: str
) -> bool:
    """Fill `index` on `target` with the source index's documents and vectors (its spec, at
    `compression`); False when it already holds them all."""
    spec = read_spec(source, source_index)
    if spec is None:
        raise ValueError(f"no index {source_index}")
    ensure_index(target, index, spec, IndexOptions(compression=compression))
    target.indices.refresh(index=index)
    want = int(source.count(index=source_index)["count"])
    if int(target.count(index=index)["count"]) >= want:
        return False
    actions = ({"_index": index, **doc} for doc in documents(source, source_index))
    backend_of(target).bulk(target, actions, chunk_size=250, request_timeout=600)
    target.indices.refresh(index=index)
    return True


class QueryVectors:
    """The encoder's query vectors, each computed once: latency then counts the search only."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.cache: dict[str, np.ndarray] = {}
        for name in ("model_id", "pooling", "normalize", "similarity", "dim", "fingerprint"):
            setattr(self, name, getattr(encoder, name))
        for name in ("runtime", "quantize", "dtype"):
            setattr(self, name, getattr(encoder, name))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.encode_queries(missing), strict=True))
        return np.stack([self.cache[t] for t in texts])


@dataclass(frozen=True)
class CompressionRow:
    collection: str
    engine: str
    compression: str
    mode: str
    ndcg10: float
    recall100: float
    p50_ms: float
    memory_per_vector: float
    disk_per_vector: float


def evaluate_level(
    client: Client,
    index: str,
    split: Any,
    queries: QueryVectors,
    *,
    engine: str,
    compression: str,
    size: Footprint,
    oversample: float | None,
) -> list[CompressionRow]:
    """knn and hybrid on one index: metrics over every judged query, p50 of one query's search."""
    measures = measures_for(DEPTH, split.min_relevant_grade)
    rows = []
    for mode in DENSE_MODES:
        searcher = make_searcher(
            mode, client, index, queries, source=False, depth=DEPTH, oversample=oversample
        )  # type: ignore[arg-type]
        qids = list(split.queries)
        searcher.search(split.queries[qids[0]], DEPTH)  # warm
        results, times = [], []
        for qid in qids:
            began = time.perf_counter()
            results.append(searcher.search(split.queries[qid], DEPTH))
            times.append(time.perf_counter() - began)
        metrics = evaluate(hits_to_run(qids, results, k=DEPTH), split.qrels, measures)
        by_name = {str(k): v for k, v in metrics.items()}
        ndcg = next(v for k, v in by_name.items() if k.startswith("nDCG"))
        recall = next(v for k, v in by_name.items() if k.startswith("R") and "@100" in k)
        rows.append(
            CompressionRow(
                split.name,
                engine,
                compression,
                mode,
                ndcg,
                recall,
                statistics.median(times) * 1000,
                size.memory_per_vector,
                size.disk_per_vector,
            )
        )
        log.info("row %s", json.dumps(dataclasses.asdict(rows[-1])))
    return rows


def eval_compression(
    client: Client,
    encoder: Encoder,
    dataset_dirs: Sequence[str | Path],
    levels: Sequence[str],
    *,
    vectors_from: Client | None = None,
    oversample: float | None = None,
    progress: bool | None = None,
) -> list[CompressionRow]:
    """Every level on each collection (on `client`'s engine); the float32 index is ingested, or
    copied from `vectors_from` where that cluster has it."""
    from bridge.report import ensure_ingested, index_name

    backend = backend_of(client)
    engine = f"{backend.product} {backend.version(client)}"
    queries = QueryVectors(encoder)
    rows: list[CompressionRow] = []
    for directory in dataset_dirs:
        split = load_split(directory)
        base = index_name(split.name)
        if vectors_from is not None:
            copy_index(vectors_from, base, client, base, "none")
        else:
            ensure_ingested(client, split.corpus, base, encoder, progress=progress)
        for level in levels:
            index = base if level == "none" else f"{base}-{level}"
            if level != "none":
                copy_index(client, base, client, index, level)
            size = footprint(client, index)
            rows += evaluate_level(
                client,
                index,
                split,
                queries,
                engine=engine,
                compression=level,
                size=size,
                oversample=oversample,
            )
    return rows


def render_rows(rows: Sequence[CompressionRow]) -> str:
    """The Markdown table, with each level's nDCG@10 difference to float32's."""
    base = {(r.collection, r.engine, r.mode): r.ndcg10 for r in rows if r.compression == "none"}
    lines = [
        "| collection | engine | compression | mode | nDCG@10 | Δ vs float32 | R@100 | "
        "p50 ms | memory B/vec | disk B/vec |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = base.get((r.collection, r.engine, r.mode))
        delta = "–" if ref is None or r.compression == "none" else f"{r.ndcg10 - ref:+.4f}"
        lines.append(
            f"| {r.collection} | {r.engine} | {r.compression} | {r.mode} | {r.ndcg10:.4f} | "
            f"{delta} | {r.recall100:.4f} | {r.p50_ms:.1f} | {r.memory_per_vector:,.0f} | "
            f"{r.disk_per_vector:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def compression_report(
    client: Client,
    encoder: Encoder,
    *,
    levels: Sequence[str],
    collections: Sequence[str],
    datasets: Path | None = None,
    vectors_from: Client | None = None,
    oversample: float | None = None,
    runs_dir: Path | None = None,
    progress: bool | None = None,
) -> str:
    """What `eval-all --compression` does: the table (rows also as JSON in `runs_dir`)."""
    from bridge.config import COMPRESSIONS
    from bridge.datasets import locate
    from bridge.errors import BadInput

    if bad := [level for level in levels if level not in COMPRESSIONS]:
        raise BadInput(
            f"--compression {bad[0]!r} is not a level: give some of {', '.join(COMPRESSIONS)}."
        )
    dirs = [locate(c) if datasets is None else datasets / c for c in collections]
    if missing := [str(d) for d in dirs if not Path(d).is_dir()]:
        raise BadInput(f"No collection at {', '.join(missing)}: check --datasets/--collections.")
    rows = eval_compression(
        client,
        encoder,
        dirs,
        levels,
        vectors_from=vectors_from,
        oversample=oversample,
        progress=progress,
    )
    if runs_dir is not None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        out = runs_dir / f"compression-{backend_of(client).name}.json"
        out.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return render_rows(rows)
