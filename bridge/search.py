"""Search strategies over a dotbridge index: BM25, dense re-ranking, native k-NN and hybrid fusion.

Every searcher has the same `search(query, k)` / `search_many(queries, k)` protocol and returns
`Hit` records. Request bodies are built by pure functions; the searchers only do the I/O.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from opensearchpy import OpenSearch

from bridge.errors import BadInput, DotbridgeError, error_reason
from bridge.indexes import IndexSpec, check_compatible, read_spec
from mappings import TEXT_FIELDS, VECTOR_FIELD, Similarity

if TYPE_CHECKING:
    from bridge.encoder import Encoder

log = logging.getLogger(__name__)

MODES = ("bm25", "rerank", "knn", "hybrid")
FUSIONS = ("rrf", "linear")
RERANK_ON = ("server", "client")

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

# The largest page OpenSearch returns by default (`index.max_result_window`, k-NN's maximum k).
MAX_RESULTS = 10_000
# One _msearch request carries at most MSEARCH_CHUNK searches and asks for at most HITS_PER_MSEARCH
# hits (VECTOR_HITS_PER_MSEARCH when they carry vectors), so that evaluating thousands of queries
# at depth 1000 keeps requests and responses small.
MSEARCH_CHUNK = 64
HITS_PER_MSEARCH = 10_000
VECTOR_HITS_PER_MSEARCH = 2_000

# Equal scores are ordered by doc id, so that runs are reproducible and both re-ranking paths agree.
SORT = [{"_score": {"order": "desc"}}, {"doc_id": {"order": "asc"}}]


@dataclass(frozen=True)
class Hit:
    """One result: `score` is the mode's relevance, `native_score` what OpenSearch returned."""

    doc_id: str
    score: float
    native_score: float
    source: dict


class Searcher(Protocol):
    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]: ...


class SearchFailed(DotbridgeError):
    """OpenSearch refused or failed a search request."""


# ---- scores ------------------------------------------------------------------------------------


def to_similarity(score: float, similarity: str | Similarity) -> float:
    """The model's similarity (dot product or cosine) from an OpenSearch k-NN score.

    Measured on OpenSearch 3.5 (lucene engine), the `knn` query (approximate or filtered exact)
    and the `knn_score` script agree: innerproduct reports `d + 1` for a dot product `d > 0`, else
    `1 / (1 - d)`; cosinesimil reports `(1 + cos) / 2`, not the `1 + cos` of older script docs.
    """
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    return 2.0 * score - 1.0


def from_similarity(value: float, similarity: str | Similarity) -> float:
    """The score OpenSearch reports for a similarity value: the inverse of `to_similarity`."""
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        return value + 1.0 if value >= 0.0 else 1.0 / (1.0 - value)
    return (1.0 + value) / 2.0


# ---- fusion ------------------------------------------------------------------------------------


def rrf(runs: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the runs, rank counted from 1.

    Best first; equal scores by doc id. Each run is read as its distinct docs in order (a repeat
    counts once, at its first place).
    """
    if k < 0:
        raise ValueError(f"rrf k must be 0 or more, got {k}")
    scores: dict[str, float] = {}
    for run in runs:
        for rank, doc_id in enumerate(dict.fromkeys(run), start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return _ranked(scores)


def linear(
    sparse: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    weight: float = 0.5,
) -> list[tuple[str, float]]:
    """`weight * dense + (1 - weight) * sparse` of min-max normalised scores; missing counts 0.

    A list whose scores are all equal normalises to 1 for each of its docs.
    """
    _check_weight(weight)
    fused: dict[str, float] = {}
    for run, w in ((sparse, 1.0 - weight), (dense, weight)):
        for doc_id, value in _min_max(run).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + w * value
    return _ranked(fused)


def _min_max(run: Sequence[tuple[str, float]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for doc_id, score in run:
        scores.setdefault(doc_id, score)
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {doc_id: (s - low) / (high - low) for doc_id, s in scores.items()}


def _ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


# ---- request bodies ----------------------------------------------------------------------------


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


def knn_body(
    vector: Sequence[float],
    k: int,
    *,
    vector_field: str = VECTOR_FIELD,
    ef_search: int | None = None,
    filter: dict | None = None,
    source: bool = True,
) -> dict:
    """An approximate k-NN search of the k nearest vectors (lucene HNSW; filter applied inside)."""
    knn: dict[str, Any] = {"vector": _floats(vector), "k": k}
    if filter:
        knn["filter"] = filter
    if ef_search is not None:
        knn["method_parameters"] = {"ef_search": ef_search}
    return {
        "size": k,
        "query": {"knn": {vector_field: knn}},
        "sort": SORT,
        "_source": source_filter(source, vector_field=vector_field),
    }


def rescore_body(
    vector: Sequence[float],
    doc_ids: Sequence[str],
    size: int,
    *,
    similarity: str | Similarity,
    vector_field: str = VECTOR_FIELD,
    source: bool = True,
) -> dict:
    """Exact similarity of the query vector to exactly the given docs (k-NN `knn_score` script).

    Unlike `rescore`, which re-scores a window per shard, this scores the given set and no more.
    """
    script = {
        "source": "knn_score",
        "lang": "knn",
        "params": {
            "field": vector_field,
            "query_value": _floats(vector),
            "space_type": Similarity.parse(similarity).space_type,
        },
    }
    return {
        "size": size,
        "query": {"script_score": {"query": {"ids": {"values": list(doc_ids)}}, "script": script}},
        "sort": SORT,
        "_source": source_filter(source, vector_field=vector_field),
    }


def ids_body(
    doc_ids: Sequence[str], *, source: bool = True, vector_field: str = VECTOR_FIELD
) -> dict:
    """The given docs with their vectors (and the rest of their source with `source`)."""
    return {
        "size": len(doc_ids),
        "query": {"ids": {"values": list(doc_ids)}},
        "_source": source_filter(source, with_vector=True, vector_field=vector_field),
    }


def source_filter(
    source: bool, *, with_vector: bool = False, vector_field: str = VECTOR_FIELD
) -> bool | dict:
    """The `_source` of a request: the document and/or its vector, or nothing."""
    if source:
        return True if with_vector else {"excludes": [vector_field]}
    return {"includes": [vector_field]} if with_vector else False


def _floats(vector: Sequence[float]) -> list[float]:
    return [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]


# ---- searchers ---------------------------------------------------------------------------------


class _Batched:
    """A searcher whose one-query search is its batch search of one."""

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        raise NotImplementedError


class Bm25(_Batched):
    """BM25 over title and text."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        *,
        filter: dict | None = None,
        source: bool = True,
    ) -> None:
        _check_exists(client, index)
        self.client = client
        self.index = index
        self.filter = filter
        self.source = source

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        _check_queries(queries)
        _check_size("k", k)
        bodies = [
            bm25_body(text, k, analyzer=analyzer, filter=self.filter, source=self.source)
            for text, analyzer in _bm25_texts(self.client, self.index, queries)
        ]
        return [
            [Hit(h["_id"], h["_score"], h["_score"], h.get("_source", {})) for h in resp]
            for resp in _msearch(self.client, self.index, bodies)
        ]


class Rerank(_Batched):
    """The global BM25 top `candidates`, re-scored by the model's exact similarity.

    on="server": the `knn_score` script scores the candidates and no vector leaves the cluster;
    on="client": the candidates' vectors are fetched and scored with numpy. Both rank alike.
    """

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        encoder: Encoder,
        *,
        candidates: int = 100,
        on: str = "server",
        filter: dict | None = None,
        source: bool = True,
    ) -> None:
        if on not in RERANK_ON:
            raise ValueError(f"unknown rerank side {on!r}; choose one of: {', '.join(RERANK_ON)}")
        _check_size("candidates", candidates)
        self.spec = _check_index(client, index, encoder)
        self.client = client
        self.index = index
        self.encoder = encoder
        self.candidates = candidates
        self.on = on
        self.filter = filter
        self.source = source

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        _check_queries(queries)
        _check_size("k", k)
        client_side = self.on == "client"
        bodies = [
            bm25_body(
                text,
                self.candidates,
                analyzer=analyzer,
                filter=self.filter,
                source=client_side and self.source,
                with_vector=client_side,
                vector_field=self.spec.vector_field,
            )
            for text, analyzer in _bm25_texts(self.client, self.index, queries)
        ]
        responses = _msearch(self.client, self.index, bodies, vectors=client_side)
        vectors = self.encoder.encode_queries(list(queries))
        if client_side:
            pairs = zip(vectors, responses, strict=True)
            scored = [self._score_locally(vec, resp)[:k] for vec, resp in pairs]
        else:
            candidate_lists = [[h["_id"] for h in resp] for resp in responses]
            scored = self._score_on_server(vectors, candidate_lists, k)
        bm25 = [{h["_id"]: h["_score"] for h in resp} for resp in responses]
        return [
            [Hit(h.doc_id, h.score, scores[h.doc_id], h.source) for h in hits]
            for hits, scores in zip(scored, bm25, strict=True)
        ]

    def rerank(self, query: str, candidate_ids: Sequence[str], k: int = 10) -> list[Hit]:
        """The given candidates re-scored; ids not in the index are dropped.

        native_score is OpenSearch's `knn_score` value (computed alike on the client side).
        """
        return self.rerank_many([query], [candidate_ids], k)[0]

    def rerank_many(
        self,
        queries: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        k: int = 10,
    ) -> list[list[Hit]]:
        _check_queries(queries)
        _check_size("k", k)
        if len(queries) != len(candidate_lists):
            raise ValueError(
                f"{len(queries)} queries but {len(candidate_lists)} candidate lists; "
                "give one list per query"
            )
        lists = [list(dict.fromkeys(str(c) for c in ids)) for ids in candidate_lists]
        longest = max((len(ids) for ids in lists), default=0)
        if longest > MAX_RESULTS:
            raise ValueError(f"at most {MAX_RESULTS} candidates per query, got {longest}")
        vectors = self.encoder.encode_queries(list(queries))
        if self.on == "server":
            return self._score_on_server(vectors, lists, k)
        field = self.spec.vector_field
        bodies = [ids_body(ids, source=self.source, vector_field=field) for ids in lists if ids]
        responses = iter(_msearch(self.client, self.index, bodies, vectors=True))
        out = []
        for vector, ids in zip(vectors, lists, strict=True):
            out.append(self._score_locally(vector, next(responses))[:k] if ids else [])
        return out

    def _score_on_server(
        self, vectors: np.ndarray, candidate_lists: Sequence[Sequence[str]], k: int
    ) -> list[list[Hit]]:
        sim = self.spec.similarity
        bodies = [
            rescore_body(
                vec,
                ids,
                k,
                similarity=sim,
                vector_field=self.spec.vector_field,
                source=self.source,
            )
            for vec, ids in zip(vectors, candidate_lists, strict=True)
            if ids
        ]
        responses = iter(_msearch(self.client, self.index, bodies))
        out = []
        for ids in candidate_lists:
            out.append(_knn_hits(next(responses), sim) if ids else [])
        return out

    def _score_locally(self, vector: np.ndarray, hits: list[dict]) -> list[Hit]:
        """All the hits (fetched with their vectors) scored by numpy, best first."""
        field = self.spec.vector_field
        hits = [h for h in hits if field in h.get("_source", {})]
        if not hits:
            return []
        matrix = np.asarray([h["_source"][field] for h in hits], dtype=np.float32)
        sim = self.spec.similarity
        values = similarities(vector, matrix, sim)
        scored = [
            Hit(
                h["_id"],
                float(v),
                from_similarity(float(v), sim),
                {key: value for key, value in h["_source"].items() if key != field},
            )
            for h, v in zip(hits, values, strict=True)
        ]
        scored.sort(key=lambda h: (-h.score, h.doc_id))
        return scored


class Knn(_Batched):
    """Native approximate k-NN on the vector field; scores converted to the model's similarity."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        encoder: Encoder,
        *,
        ef_search: int | None = None,
        filter: dict | None = None,
        source: bool = True,
    ) -> None:
        if ef_search is not None:
            _check_size("ef_search", ef_search)
        self.spec = _check_index(client, index, encoder)
        self.client = client
        self.index = index
        self.encoder = encoder
        self.ef_search = ef_search
        self.filter = filter
        self.source = source

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        _check_queries(queries)
        _check_size("k", k)
        vectors = self.encoder.encode_queries(list(queries))
        bodies = [
            knn_body(
                vec,
                k,
                vector_field=self.spec.vector_field,
                ef_search=self.ef_search,
                filter=self.filter,
                source=self.source,
            )
            for vec in vectors
        ]
        responses = _msearch(self.client, self.index, bodies)
        return [_knn_hits(resp, self.spec.similarity) for resp in responses]


class Hybrid(_Batched):
    """A sparse and a dense searcher, each asked for `depth` hits, fused by rank or by score."""

    def __init__(
        self,
        sparse: Searcher,
        dense: Searcher,
        *,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weight: float = 0.5,
        depth: int = 100,
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of: {', '.join(FUSIONS)}")
        if rrf_k < 0:
            raise ValueError(f"rrf_k must be 0 or more, got {rrf_k}")
        _check_weight(weight)
        _check_size("depth", depth)
        self.sparse = sparse
        self.dense = dense
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weight = weight
        self.depth = depth

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        _check_queries(queries)
        _check_size("k", k)
        depth = max(self.depth, k)  # fewer than k from each side could not fill k
        sparse_runs = self.sparse.search_many(queries, depth)
        dense_runs = self.dense.search_many(queries, depth)
        return [self._fuse(s, d)[:k] for s, d in zip(sparse_runs, dense_runs, strict=True)]

    def _fuse(self, sparse: list[Hit], dense: list[Hit]) -> list[Hit]:
        if self.fusion == "rrf":
            fused = rrf([[h.doc_id for h in sparse], [h.doc_id for h in dense]], k=self.rrf_k)
        else:
            fused = linear(
                [(h.doc_id, h.score) for h in sparse],
                [(h.doc_id, h.score) for h in dense],
                weight=self.weight,
            )
        sources = {h.doc_id: h.source for h in (*sparse, *dense)}
        return [Hit(doc_id, score, score, sources[doc_id]) for doc_id, score in fused]


def make_searcher(
    mode: str,
    client: OpenSearch,
    index: str,
    encoder: Encoder | None = None,
    *,
    candidates: int = 100,
    on: str = "server",
    ef_search: int | None = None,
    filter: dict | None = None,
    fusion: str = "rrf",
    rrf_k: int = 60,
    weight: float = 0.5,
    depth: int = 100,
    source: bool = True,
) -> Searcher:
    """The searcher of a mode; options that do not apply to the mode are ignored.

    `filter` (an OpenSearch query) restricts every stage; `source=False` returns hits without
    their documents (ids and scores only, as evaluation needs).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "bm25":
        return Bm25(client, index, filter=filter, source=source)
    if encoder is None:
        raise ValueError(f"mode {mode!r} needs an encoder")
    if mode == "rerank":
        return Rerank(
            client, index, encoder, candidates=candidates, on=on, filter=filter, source=source
        )
    knn = Knn(client, index, encoder, ef_search=ef_search, filter=filter, source=source)
    if mode == "knn":
        return knn
    return Hybrid(
        Bm25(client, index, filter=filter, source=source),
        knn,
        fusion=fusion,
        rrf_k=rrf_k,
        weight=weight,
        depth=depth,
    )


def similarities(query: np.ndarray, matrix: np.ndarray, similarity: str | Similarity) -> np.ndarray:
    """The similarity of one query vector to each row of a matrix, as OpenSearch defines it.

    Computed in float64 from the float32 vectors: the exact value that OpenSearch's float32
    arithmetic approximates.
    """
    query = np.asarray(query, dtype=np.float32).astype(np.float64)
    matrix = np.asarray(matrix, dtype=np.float32).astype(np.float64)
    dots = matrix @ query
    if Similarity.parse(similarity) is Similarity.DOT:
        return dots
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return dots / np.maximum(norms, np.finfo(np.float64).tiny)


def _knn_hits(hits: list[dict], similarity: Similarity) -> list[Hit]:
    return [
        Hit(h["_id"], to_similarity(h["_score"], similarity), h["_score"], h.get("_source", {}))
        for h in hits
    ]


# ---- I/O helpers -------------------------------------------------------------------------------


def _bm25_texts(
    client: OpenSearch, index: str, queries: Sequence[str]
) -> list[tuple[str, str | None]]:
    """(text, analyzer override) per query, long queries cut to at most MAX_QUERY_TERMS tokens."""
    out: list[tuple[str, str | None]] = []
    for query in queries:
        if len(query) <= RAW_QUERY_MAX_CHARS:
            out.append((query, None))
            continue
        resp = client.indices.analyze(
            index=index, body={"field": TEXT_FIELDS[-1], "text": query[:ANALYZE_MAX_CHARS]}
        )
        tokens = [t["token"] for t in resp.get("tokens", [])]
        terms = cap_terms(tokens)
        if len(terms) < len(tokens):
            log.info("long query: %d tokens cut to %d distinct ones", len(tokens), len(terms))
        # The tokens are analysed already: split them on spaces only, as they are.
        out.append((" ".join(terms), "whitespace"))
    return out


def _msearch(
    client: OpenSearch, index: str, bodies: Sequence[dict], *, vectors: bool = False
) -> list[list[dict]]:
    """The hits of each body, in order, through as few _msearch requests as the limits allow."""
    out: list[list[dict]] = []
    budget = VECTOR_HITS_PER_MSEARCH if vectors else HITS_PER_MSEARCH
    largest = max((int(body.get("size", 10)) for body in bodies), default=1)
    chunk = max(1, min(MSEARCH_CHUNK, budget // max(largest, 1)))
    for start in range(0, len(bodies), chunk):
        lines: list[dict] = []
        for body in bodies[start : start + chunk]:
            lines += [{"index": index}, body]
        for resp in client.msearch(body=lines)["responses"]:
            if "error" in resp:
                raise _search_error(index, resp["error"])
            out.append(resp["hits"]["hits"])
    return out


def _search_error(index: str, error: Any) -> DotbridgeError:
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "index_not_found_exception":
        return _missing(index)
    reason = error_reason(error)
    return SearchFailed(f"OpenSearch failed a search on index {index!r}: {reason}.")


def _missing(index: str) -> BadInput:
    return BadInput(
        f"Index {index!r} does not exist: build it first with `dotbridge ingest` "
        f"(--index {index}), or pass the --index of an existing one."
    )


def _check_exists(client: OpenSearch, index: str) -> None:
    if not client.indices.exists(index=index):
        raise _missing(index)


def _check_index(client: OpenSearch, index: str, encoder: Encoder) -> IndexSpec:
    """The index's spec, after checking that the encoder is the one its vectors were made with."""
    stored = read_spec(client, index)
    if stored is None:
        raise _missing(index)
    check_compatible(index, stored, IndexSpec.of(encoder))
    return stored


def _check_queries(queries: Sequence[str]) -> None:
    if isinstance(queries, str):
        raise TypeError("queries must be a sequence of strings, not a single string")
    for number, query in enumerate(queries, start=1):
        try:
            check_query(query)
        except BadInput as exc:
            if len(queries) == 1:
                raise
            raise BadInput(f"Query {number} of {len(queries)}: {exc.message}") from None


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_RESULTS}, got {value!r}")


def _check_weight(weight: float) -> None:
    if not (isinstance(weight, int | float) and math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise ValueError(f"weight must be between 0 and 1, got {weight!r}")
