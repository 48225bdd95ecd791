"""Request bodies of every search, built by pure functions (unit-tested without a server).

The BM25, paging and fetch parts are the same on both engines; the k-NN and exact-scoring
clauses come from the engine's backend (`backend=`, OpenSearch's when none is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.errors import BadInput
from mappings import TEXT_FIELDS, VECTOR_FIELD, Similarity

if TYPE_CHECKING:
    from bridge.backends import Backend

# OpenSearch refuses a query with more than `indices.query.bool.max_clause_count` (1024) leaf
# clauses in all, and a multi_match over the two text fields makes one clause per field and
# query token. A query of at most RAW_QUERY_MAX_CHARS characters cannot have more tokens than
# characters, so it is sent as typed. A longer one is analysed by the index itself (`_analyze`,
# on its first ANALYZE_MAX_CHARS characters, below the 10,000-token limit of that API) and, when
# it has more than MAX_QUERY_TERMS tokens, reduced to its first MAX_QUERY_TERMS distinct tokens:
# 2 x 256 = 512 clauses, half the limit, leaving room for a filter.
RAW_QUERY_MAX_CHARS = 256
ANALYZE_MAX_CHARS = 8192
MAX_QUERY_TERMS = 256

# Equal scores are ordered by doc id, descending as trec_eval orders them: runs are reproducible,
# both re-ranking paths agree, and a run file means to trec_eval what `search` returned. An index
# not made by dotbridge has no doc_id: `unmapped_type` lets BM25 search it without the tie-break.
SORT = [
    {"_score": {"order": "desc"}},
    {"doc_id": {"order": "desc", "unmapped_type": "keyword"}},
]


def check_query(query: str) -> str:
    """The query unchanged; BadInput when it is empty or only whitespace."""
    if not isinstance(query, str):
        raise BadInput(f"A query must be text, got {type(query).__name__}.")
    if not query.strip():
        raise BadInput("The query is empty: give at least one word to search for.")
    return query


def cap_terms(tokens: Sequence[str], limit: int = MAX_QUERY_TERMS) -> list[str]:
    """The tokens as they are when there are at most `limit`, else the first `limit` distinct."""
    if len(tokens) <= limit:
        return list(tokens)
    return list(dict.fromkeys(tokens))[:limit]


def bm25_query(text: str, *, analyzer: str | None = None, filter: dict | None = None) -> dict:
    """A BM25 match of the text on title and text, as BEIR's Elasticsearch baseline.

    multi_match parses no query syntax, so quotes, brackets, AND/OR or `*` are just text.
    `analyzer` overrides the fields' search analyzer (`whitespace` for pre-analysed tokens).
    """
    match: dict[str, Any] = {
        "query": text,
        "fields": list(TEXT_FIELDS),
        "type": "best_fields",
        "tie_breaker": 0.5,
    }
    if analyzer is not None:
        match["analyzer"] = analyzer
    query = {"multi_match": match}
    if filter:
        return {"bool": {"must": [query], "filter": [filter]}}
    return query


def bm25_body(
    text: str,
    size: int,
    *,
    analyzer: str | None = None,
    filter: dict | None = None,
    source: bool = True,
    with_vector: bool = False,
    vector_field: str = VECTOR_FIELD,
) -> dict:
    """A BM25 search, best first; `source`: the document without its vector; `with_vector`: it."""
    return {
        "size": size,
        "query": bm25_query(text, analyzer=analyzer, filter=filter),
        "sort": SORT,
        "_source": source_filter(source, with_vector=with_vector, vector_field=vector_field),
    }


def knn_query(
    vector: Sequence[float],
    k: int,
    *,
    vector_field: str = VECTOR_FIELD,
    ef_search: int | None = None,
    filter: dict | None = None,
    backend: Backend | None = None,
    compression: str = "none",
    oversample: float | None = None,
) -> dict:
    """The clause that finds the k nearest vectors, in the engine's syntax (OpenSearch's `knn`
    by default); a filter is applied inside the search. On a compressed index, `oversample` x k
    candidates re-scored exactly (see `Backend.knn_query`)."""
    return engine(backend).knn_query(
        floats(vector),
        k,
        vector_field=vector_field,
        ef_search=ef_search,
        filter=filter,
        compression=compression,
        oversample=oversample,
    )


def knn_body(
    vector: Sequence[float],
    k: int,
    *,
    vector_field: str = VECTOR_FIELD,
    ef_search: int | None = None,
    filter: dict | None = None,
    source: bool = True,
    backend: Backend | None = None,
    compression: str = "none",
    oversample: float | None = None,
) -> dict:
    """An approximate k-NN search of the k nearest vectors, best first."""
    return {
        "size": k,
        "query": knn_query(
            vector,
            k,
            vector_field=vector_field,
            ef_search=ef_search,
            filter=filter,
            backend=backend,
            compression=compression,
            oversample=oversample,
        ),
        "sort": SORT,
        "_source": source_filter(source, vector_field=vector_field),
    }


def exact_score_body(
    vector: Sequence[float],
    doc_ids: Sequence[str],
    size: int,
    *,
    similarity: str | Similarity,
    vector_field: str = VECTOR_FIELD,
    source: bool = True,
    backend: Backend | None = None,
    compression: str = "none",
) -> dict:
    """Exact similarity of the query vector to exactly the given docs, best first: OpenSearch's
    `knn_score` script, Elasticsearch's `knn` query filtered to those ids (see the backends).

    Unlike a `rescore`, which re-scores a window per shard, this scores the given set and no
    more.
    """
    query = engine(backend).exact_query(
        floats(vector),
        list(doc_ids),
        similarity=Similarity.parse(similarity),
        field=vector_field,
        compression=compression,
    )
    return {
        "size": size,
        "query": query,
        "sort": SORT,
        "_source": source_filter(source, vector_field=vector_field),
    }


def ids_body(
    doc_ids: Sequence[str],
    *,
    source: bool = True,
    with_vector: bool = True,
    vector_field: str = VECTOR_FIELD,
) -> dict:
    """The given docs: their vectors (`with_vector`) and/or the rest of their source."""
    return {
        "size": len(doc_ids),
        "query": {"ids": {"values": list(doc_ids)}},
        "_source": source_filter(source, with_vector=with_vector, vector_field=vector_field),
    }


def source_filter(
    source: bool, *, with_vector: bool = False, vector_field: str = VECTOR_FIELD
) -> bool | dict:
    """The `_source` of a request: the document and/or its vector, or nothing."""
    if source:
        return True if with_vector else {"excludes": [vector_field]}
    return {"includes": [vector_field]} if with_vector else False


def floats(vector: Sequence[float]) -> list[float]:
    """A vector as the JSON list the engines take, through float32 as the index stores it."""
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


def engine(backend: Backend | None) -> Backend:
    """The backend whose syntax a body is built in: OpenSearch's unless one is given."""
    if backend is not None:
        return backend
    from bridge.backends.opensearch import OPENSEARCH

    return OPENSEARCH
