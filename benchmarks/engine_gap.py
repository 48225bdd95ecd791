"""Why SciFact's numbers on Elasticsearch differ from OpenSearch's: a measurement.

The same documents and the same vectors (copied from one dotbridge index, so no passage is
encoded twice) go into one-shard indexes on both engines: OpenSearch with dotbridge's `english`
analyzer, OpenSearch with `standard`, and Elasticsearch with `standard` (the analyzer dotbridge
falls back to where a cluster has no `english`, as the integration-test distribution). Every
mode is evaluated on each with the same model and the same plans as `dotbridge eval-all`, and
hybrid once more with a near-exact k-NN side (ef_search / num_candidates 1000 instead of the
default 100), which tells the approximate search's share of a difference. Then, for the two
`standard` indexes, BM25 itself is compared query by query (ids of the top 100, and the ratio
of the scores), and each engine's BM25 parameters are read from `_explain`.

    python benchmarks/engine_gap.py --opensearch http://127.0.0.1:9200 \\
        --elasticsearch http://127.0.0.1:9201 --source-index eval-minilm-scifact \\
        [--dataset ../shared/datasets/scifact]

The source index is read from Elasticsearch unless --source-engine opensearch.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bridge.backends import backend_of
from bridge.client import connect
from bridge.config import ConnectionSettings, minilm_model_dir
from bridge.encoder import Encoder
from bridge.evaluate import load_split, run_eval
from bridge.indexes import IndexOptions, ensure_index, read_spec
from bridge.report import evaluate_split
from bridge.search import Bm25, make_searcher

VARIANTS = (
    ("opensearch", "english"),
    ("opensearch", "standard"),
    ("elasticsearch", "standard"),
)
PAGE = 500
EXACT_HYBRID = "hybrid, k-NN side ef 1000"


def documents(client, index: str) -> Iterator[dict]:
    """Every document of a dotbridge index with its vector, in doc id order (search_after)."""
    after = None
    while True:
        body = {"size": PAGE, "sort": [{"doc_id": "asc"}], "query": {"match_all": {}}}
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body)["hits"]["hits"]
        if not hits:
            return
        for hit in hits:
            yield hit["_source"]
        after = hits[-1]["sort"]


def fill(client, index: str, docs: list[dict]) -> None:
    actions = ({"_index": index, "_id": d["doc_id"], "_source": d} for d in docs)
    backend_of(client).bulk(client, actions, chunk_size=500)
    client.indices.refresh(index=index)


def bm25_parameters(client, index: str, query: str) -> tuple[float, float]:
    """k1, b and the constant boost (1 where none) as the engine's own `_explain` of the top
    BM25 hit states them."""
    (hit,) = Bm25(client, index, source=False).search(query, k=1)
    body = {"query": {"match": {"text": query}}}
    explanation = client.explain(index=index, id=hit.doc_id, body=body)["explanation"]
    found: dict[str, float] = {}

    def visit(node: dict) -> None:
        match = re.match(r"(k1|b|boost)(, |$)", node.get("description", ""))
        if match:
            found.setdefault(match.group(1), node["value"])
        for child in node.get("details", []):
            visit(child)

    visit(explanation)
    return found["k1"], found["b"], found.get("boost", 1.0)


def compare_bm25(os_client, os_index, es_client, es_index, queries: list[str]) -> dict:
    """How alike the two engines' BM25 top 100 are on the same analyzer."""
    same_ids = same_order = 0
    ratios: list[float] = []
    os_runs = Bm25(os_client, os_index, source=False).search_many(queries, k=100)
    es_runs = Bm25(es_client, es_index, source=False).search_many(queries, k=100)
    for os_hits, es_hits in zip(os_runs, es_runs, strict=True):
        os_ids, es_ids = [h.doc_id for h in os_hits], [h.doc_id for h in es_hits]
        same_ids += set(os_ids) == set(es_ids)
        same_order += os_ids == es_ids
        es_scores = {h.doc_id: h.score for h in es_hits}
        ratios += [es_scores[h.doc_id] / h.score for h in os_hits if h.doc_id in es_scores]
    return {
        "queries": len(queries),
        "same top-100 set": same_ids,
        "same top-100 order": same_order,
        "Elasticsearch / OpenSearch score, min": min(ratios),
        "Elasticsearch / OpenSearch score, max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch", required=True, help="OpenSearch URL")
    parser.add_argument("--elasticsearch", required=True, help="Elasticsearch URL")
    parser.add_argument("--source-index", default="eval-minilm-scifact")
    parser.add_argument("--source-engine", choices=("opensearch", "elasticsearch"))
    parser.add_argument("--dataset", type=Path, default=Path("../shared/datasets/scifact"))
    parser.add_argument("--modes", default="bm25,rerank,knn,hybrid")
    parser.add_argument("--keep", action="store_true", help="Keep the indexes afterwards.")
    args = parser.parse_args()
    clients = {
        "opensearch": connect(ConnectionSettings(url=args.opensearch, backend="opensearch")),
        "elasticsearch": connect(
            ConnectionSettings(url=args.elasticsearch, backend="elasticsearch")
        ),
    }
    source = clients[args.source_engine or "elasticsearch"]
    encoder = Encoder(minilm_model_dir(), device="cpu")
    stored = read_spec(source, args.source_index)
    assert stored is not None, f"no index {args.source_index}"
    docs = list(documents(source, args.source_index))
    split = load_split(args.dataset)
    print(f"{len(docs)} documents from {args.source_index} ({stored.describe()})")
    modes = args.modes.split(",")
    results: dict[tuple[str, str], dict[str, float]] = {}
    indexes: dict[tuple[str, str], str] = {}
    try:
        for engine, analyzer in VARIANTS:
            client = clients[engine]
            index = f"engine-gap-{engine}-{analyzer}-{uuid.uuid4().hex[:6]}"
            indexes[engine, analyzer] = index
            ensure_index(client, index, stored, IndexOptions(analyzer=analyzer))
            fill(client, index, docs)
            rows = evaluate_split(split, client=client, index=index, encoder=encoder, modes=modes)
            results[engine, analyzer] = {row.mode: row.metrics["nDCG@10"] for row in rows}
            if "hybrid" in modes:
                near_exact = make_searcher(
                    "hybrid", client, index, encoder, depth=100, ef_search=1000, source=False
                )
                result = run_eval(
                    near_exact, split.queries, split.qrels, k=100, measures=["nDCG@10"]
                )
                results[engine, analyzer][EXACT_HYBRID] = result.metrics["nDCG@10"]
        parity = compare_bm25(
            clients["opensearch"],
            indexes["opensearch", "standard"],
            clients["elasticsearch"],
            indexes["elasticsearch", "standard"],
            list(split.queries.values()),
        )
        query = next(iter(split.queries.values()))
        params = {
            engine: bm25_parameters(clients[engine], indexes[engine, "standard"], query)
            for engine in clients
        }
    finally:
        if not args.keep:
            for (engine, _), index in indexes.items():
                clients[engine].indices.delete(index=index, ignore_unavailable=True)
    versions = {
        engine: f"{backend_of(client).product} {backend_of(client).version(client)}"
        for engine, client in clients.items()
    }
    columns = modes + ([EXACT_HYBRID] if "hybrid" in modes else [])
    print(f"\n{split.name} nDCG@10, {len(split.queries)} queries, same vectors everywhere:\n")
    print("| engine | analyzer | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for engine, analyzer in VARIANTS:
        cells = " | ".join(f"{results[engine, analyzer][m]:.3f}" for m in columns)
        print(f"| {versions[engine]} | {analyzer} | {cells} |")
    print("\nBM25 on the standard analyzer, OpenSearch vs Elasticsearch:")
    for name, value in parity.items():
        print(f"- {name}: {value:.4f}" if isinstance(value, float) else f"- {name}: {value}")
    for engine, (k1, b, boost) in params.items():
        print(f"- {versions[engine]} BM25 from _explain: k1={k1:g} b={b:g}, boost {boost:g}")
    knn = {e: results[e, "standard"].get("knn") for e in clients}
    if all(v is not None for v in knn.values()):
        print(f"- k-NN nDCG@10 difference: {abs(np.subtract(*knn.values())):.3f}")


if __name__ == "__main__":
    main()
