"""How Elasticsearch reports k-NN scores, and whether filtered k-NN is exact: a measurement.

For the Elasticsearch search backend: on a real node (ELASTICSEARCH_URL, default the local one
from `dotbridge elasticsearch start`), it indexes known vectors into `dense_vector` fields with
each similarity and prints, for every hit of a top-level `knn` search, the true dot product or
cosine (numpy, float64) beside the `_score` and the inverse of the documented conversion. Then
it checks on ~2,000 random vectors whether a `knn` search restricted to N ids with
k = num_candidates = N returns all N with exact scores. Both forms are measured: the top-level
`knn` section of a search and the `knn` query (inside `query`), which dotbridge sends.

    python benchmarks/es_scores.py [--url http://127.0.0.1:9201] [--docs 2000] [--dim 384]
"""

from __future__ import annotations

import argparse
import os
import uuid

import numpy as np
from elasticsearch import Elasticsearch, helpers

SIMILARITIES = ("max_inner_product", "dot_product", "cosine")
FORMS = ("top-level knn", "knn query")


def knn_search(es: Elasticsearch, index: str, form: str, knn: dict, size: int) -> list[dict]:
    """The hits of a k-NN search in either form (`knn` section, or `knn` inside `query`)."""
    if form == "top-level knn":
        resp = es.search(index=index, knn=knn, size=size, source=False)
    else:
        resp = es.search(index=index, query={"knn": knn}, size=size, source=False)
    return resp["hits"]["hits"]


def to_similarity(similarity: str, score: np.ndarray) -> np.ndarray:
    """The documented inverse: _score back to the dot product or cosine."""
    if similarity == "max_inner_product":  # d >= 0: d + 1; d < 0: 1 / (1 - d)
        return np.where(score >= 1, score - 1, 1 - 1 / score)
    return 2 * score - 1  # dot_product (unit vectors) and cosine: (1 + s) / 2


def create(es: Elasticsearch, dim: int, similarity: str) -> str:
    index = f"es-scores-{similarity.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    es.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings={
            "properties": {
                "v": {
                    "type": "dense_vector",
                    "dims": dim,
                    "index": True,
                    "similarity": similarity,
                    "index_options": {"type": "hnsw"},  # no quantisation
                }
            }
        },
    )
    return index


def fill(es: Elasticsearch, index: str, vectors: np.ndarray) -> None:
    helpers.bulk(
        es, ({"_index": index, "_id": str(i), "v": v.tolist()} for i, v in enumerate(vectors))
    )
    es.indices.refresh(index=index)


def conventions(es: Elasticsearch) -> None:
    """Known small vectors with positive and negative dot products against one query."""
    rng = np.random.default_rng(11)
    query = rng.normal(size=8)
    raw = rng.normal(size=(12, 8)) * rng.uniform(0.2, 3.0, size=(12, 1))
    print("## score conventions (top-level knn, k = num_candidates = all)")
    for similarity in SIMILARITIES:
        q, docs = query, raw
        if similarity == "dot_product":  # must be unit length
            q = query / np.linalg.norm(query)
            docs = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        docs32, q32 = docs.astype(np.float32), q.astype(np.float32)
        index = create(es, 8, similarity)
        try:
            fill(es, index, docs32)
            knn = {"field": "v", "query_vector": q32.tolist(), "k": 12, "num_candidates": 12}
            by_form = {form: knn_search(es, index, form, knn, 12) for form in FORMS}
        finally:
            es.indices.delete(index=index)
        hits = by_form[FORMS[0]]
        same = [(h["_id"], h["_score"]) for h in hits] == [
            (h["_id"], h["_score"]) for h in by_form[FORMS[1]]
        ]
        ids = [int(h["_id"]) for h in hits]
        scores = np.array([h["_score"] for h in hits], dtype=np.float64)
        d64, q64 = docs32.astype(np.float64), q32.astype(np.float64)
        dots = d64[ids] @ q64
        cos = dots / (np.linalg.norm(d64[ids], axis=1) * np.linalg.norm(q64))
        truth = cos if similarity == "cosine" else dots
        back = to_similarity(similarity, scores)
        print(f"\n### {similarity}")
        print("| id | true dot | true cosine | _score | back-converted | back - true |")
        print("|---:|---:|---:|---:|---:|---:|")
        for i, t_dot, t_cos, s, b, t in zip(ids, dots, cos, scores, back, truth, strict=True):
            print(f"| {i} | {t_dot:.6f} | {t_cos:.6f} | {s:.6f} | {b:.6f} | {b - t:+.2e} |")
        order_ok = list(np.argsort(-truth, kind="stable")) == list(range(len(ids)))
        print(
            f"order by true value: {order_ok}; max |back - true| = {np.abs(back - truth).max():.2e}"
            f"; the knn query gives the same ids and scores: {same}"
        )


def exactness(es: Elasticsearch, n_docs: int, dim: int, sizes: list[int]) -> None:
    """Filtered knn over N chosen ids: are all N returned, with exact scores?"""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(n_docs, dim)).astype(np.float32)
    print(f"\n## filtered knn exactness ({n_docs} docs, dim {dim}, float32 vectors)")
    print(
        "| form | similarity | N | returned | all N | max abs err (float64 truth) | order exact |"
    )
    print("|---|---|---:|---:|---|---:|---|")
    for similarity in ("max_inner_product", "cosine"):
        index = create(es, dim, similarity)
        try:
            fill(es, index, vectors)
            for form in FORMS:
                for n in sizes:
                    chosen = rng.choice(n_docs, size=n, replace=False)
                    query = rng.normal(size=dim).astype(np.float32)
                    knn = {
                        "field": "v",
                        "query_vector": query.tolist(),
                        "k": n,
                        "num_candidates": n,
                        "filter": {"ids": {"values": [str(i) for i in chosen]}},
                    }
                    hits = knn_search(es, index, form, knn, n)
                    got = [int(h["_id"]) for h in hits]
                    back = to_similarity(similarity, np.array([h["_score"] for h in hits]))
                    v64, q64 = vectors.astype(np.float64), query.astype(np.float64)
                    truth = v64[got] @ q64
                    if similarity == "cosine":
                        truth /= np.linalg.norm(v64[got], axis=1) * np.linalg.norm(q64)
                    err = np.abs(back - truth).max() if got else float("nan")
                    order = np.all(np.diff(truth) <= 1e-6)
                    every = set(got) == set(chosen.tolist())
                    print(
                        f"| {form} | {similarity} | {n} | {len(got)} | {every} "
                        f"| {err:.2e} | {bool(order)} |"
                    )
        finally:
            es.indices.delete(index=index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9201")
    )
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    es = Elasticsearch(args.url)
    print(f"Elasticsearch {es.cluster.health()['cluster_name']} at {args.url}")
    conventions(es)
    exactness(es, args.docs, args.dim, [10, 100, 500, 1000])


if __name__ == "__main__":
    main()
