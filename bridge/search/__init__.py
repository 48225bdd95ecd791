"""Search over a dotbridge index: BM25, exact re-ranking, native k-NN and hybrid fusion.

One concern per module: `scores` (the engine's k-NN scores <-> the model's similarity),
`fusion` (RRF and linear, plain functions), `bodies` (request bodies, pure functions),
`transport` (`_msearch`, long-query analysis, search errors), `searchers` (the Searcher
protocol and the four modes) and `query` (a searcher opened on an index with its model).
"""

from __future__ import annotations

from bridge.config import FUSIONS, MAX_RESULTS, MODES, RERANK_SIDES
from bridge.search.bodies import (
    bm25_body,
    bm25_query,
    cap_terms,
    check_query,
    exact_score_body,
    ids_body,
    knn_body,
    knn_query,
    source_filter,
)
from bridge.search.fusion import linear, rrf
from bridge.search.query import open_searcher, search_index
from bridge.search.scores import from_similarity, similarities, to_similarity
from bridge.search.searchers import (
    BatchSearcher,
    Bm25,
    Hit,
    Hybrid,
    Knn,
    Rerank,
    Searcher,
    make_searcher,
)
from bridge.search.transport import SearchFailed

__all__ = [
    "FUSIONS",
    "MAX_RESULTS",
    "MODES",
    "RERANK_SIDES",
    "BatchSearcher",
    "Bm25",
    "Hit",
    "Hybrid",
    "Knn",
    "Rerank",
    "SearchFailed",
    "Searcher",
    "bm25_body",
    "bm25_query",
    "cap_terms",
    "check_query",
    "exact_score_body",
    "from_similarity",
    "ids_body",
    "knn_body",
    "knn_query",
    "linear",
    "make_searcher",
    "open_searcher",
    "rrf",
    "search_index",
    "similarities",
    "source_filter",
    "to_similarity",
]
