"""The searchers: BM25, exact re-ranking, native k-NN and hybrid fusion, one protocol for all.

Every searcher has `search(query, k)` / `search_many(queries, k)` and returns `Hit` records,
so Hybrid just combines two of them. Bodies come from `bodies`, fusion from `fusion`, scores
from `scores`; the searchers only do the I/O, through `transport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bridge.backends import Backend, Client, backend_of
from bridge.config import FUSIONS, MAX_RESULTS, MODES, RERANK_SIDES
from bridge.search.bodies import bm25_body, exact_score_body, ids_body, knn_body
from bridge.search.checks import check_index, check_oversample, check_queries, check_size
from bridge.search.fusion import check_weight, linear, rrf
from bridge.search.scores import similarities, to_similarity
from bridge.search.transport import (
    background,
    bm25_search_type,
    bm25_texts,
    check_exists,
    msearch,
)
from mappings import Similarity

if TYPE_CHECKING:
    from bridge.encoder import Encoder


@dataclass(frozen=True)
class Hit:
    """One result. `score` is what the mode ranks by: the BM25 score (bm25), the model's
    similarity (rerank, knn) or the fused score (hybrid). The parts it came from are kept
    where known: `bm25_score` from BM25, `similarity` the model's dot product or cosine."""

    doc_id: str
    score: float
    source: dict
    bm25_score: float | None = None
    similarity: float | None = None


class Searcher(Protocol):
    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]: ...


class BatchSearcher:
    """Base of the searchers: each implements `search_many`; `search` is a batch of one."""

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        raise NotImplementedError


class Bm25(BatchSearcher):
    """BM25 over title and text."""

    def __init__(
        self,
        client: Client,
        index: str,
        *,
        filter: dict | None = None,
        source: bool = True,
    ) -> None:
        check_exists(client, index)
        self.client = client
        self.index = index
        self.filter = filter
        self.source = source
        self.search_type = bm25_search_type(client, index)

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        check_queries(queries)
        check_size("k", k)
        bodies = self.bodies(queries, k)
        types = [self.search_type] * len(bodies)
        return self.hits(msearch(self.client, self.index, bodies, search_types=types))

    def bodies(self, queries: Sequence[str], k: int, *, source: bool | None = None) -> list[dict]:
        """One request body per query (long queries are analysed by the index first);
        `source` overrides the searcher's own choice."""
        source = self.source if source is None else source
        return [
            bm25_body(text, k, analyzer=analyzer, filter=self.filter, source=source)
            for text, analyzer in bm25_texts(self.client, self.index, queries)
        ]

    @staticmethod
    def hits(responses: Sequence[list[dict]]) -> list[list[Hit]]:
        return [
            [Hit(h["_id"], h["_score"], h.get("_source", {}), bm25_score=h["_score"]) for h in resp]
            for resp in responses
        ]


class Rerank(BatchSearcher):
    """The global BM25 top `candidates`, re-scored by the model's exact similarity.

    rerank_on="server": the cluster scores exactly the candidates and no vector leaves it
    (OpenSearch: the `knn_score` script; Elasticsearch: a `knn` query filtered to their ids);
    rerank_on="client": the candidates' vectors are fetched and scored with numpy. Both rank
    alike.
    """

    def __init__(
        self,
        client: Client,
        index: str,
        encoder: Encoder,
        *,
        candidates: int = 100,
        rerank_on: str = "server",
        filter: dict | None = None,
        source: bool = True,
    ) -> None:
        if rerank_on not in RERANK_SIDES:
            raise ValueError(
                f"unknown rerank side {rerank_on!r}; choose one of: {', '.join(RERANK_SIDES)}"
            )
        check_size("candidates", candidates)
        self.spec = check_index(client, index, encoder)
        self.backend = backend_of(client)
        self.client = client
        self.index = index
        self.encoder = encoder
        self.candidates = candidates
        self.rerank_on = rerank_on
        self.filter = filter
        self.source = source
        self.search_type = bm25_search_type(client, index)

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        check_queries(queries)
        check_size("k", k)
        on_client = self.rerank_on == "client"
        bodies = [
            bm25_body(
                text,
                self.candidates,
                analyzer=analyzer,
                filter=self.filter,
                source=on_client and self.source,
                with_vector=on_client,
                vector_field=self.spec.vector_field,
            )
            for text, analyzer in bm25_texts(self.client, self.index, queries)
        ]
        types = [self.search_type] * len(bodies)
        pending = background(
            msearch, self.client, self.index, bodies, vectors=on_client, search_types=types
        )
        vectors = self.encoder.encode_queries(list(queries))  # while BM25 runs on the cluster
        responses = pending.result()
        if on_client:
            pairs = zip(vectors, responses, strict=True)
            scored = [self._score_here(vec, resp)[:k] for vec, resp in pairs]
        else:
            candidate_lists = [[h["_id"] for h in resp] for resp in responses]
            scored = self._score_on_server(vectors, candidate_lists, k)
        bm25 = [{h["_id"]: h["_score"] for h in resp} for resp in responses]
        return [
            [
                Hit(h.doc_id, h.score, h.source, bm25_score=scores[h.doc_id], similarity=h.score)
                for h in hits
            ]
            for hits, scores in zip(scored, bm25, strict=True)
        ]

    def rerank(self, query: str, candidate_ids: Sequence[str], k: int = 10) -> list[Hit]:
        """The given candidates re-scored; ids not in the index are dropped."""
        return self.rerank_many([query], [candidate_ids], k)[0]

    def rerank_many(
        self,
        queries: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        k: int = 10,
    ) -> list[list[Hit]]:
        check_queries(queries)
        check_size("k", k)
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
        if self.rerank_on == "server":
            return self._score_on_server(vectors, lists, k)
        field = self.spec.vector_field
        bodies = [ids_body(ids, source=self.source, vector_field=field) for ids in lists if ids]
        responses = iter(msearch(self.client, self.index, bodies, vectors=True))
        out = []
        for vector, ids in zip(vectors, lists, strict=True):
            out.append(self._score_here(vector, next(responses))[:k] if ids else [])
        return out

    def _score_on_server(
        self, vectors: np.ndarray, candidate_lists: Sequence[Sequence[str]], k: int
    ) -> list[list[Hit]]:
        sim = self.spec.similarity
        bodies = [
            exact_score_body(
                vec,
                ids,
                k,
                similarity=sim,
                vector_field=self.spec.vector_field,
                source=self.source,
                backend=self.backend,
                compression=self.spec.compression,
            )
            for vec, ids in zip(vectors, candidate_lists, strict=True)
            if ids
        ]
        responses = iter(msearch(self.client, self.index, bodies))
        out = []
        for ids in candidate_lists:
            out.append(knn_hits(next(responses), sim, self.backend) if ids else [])
        return out

    def _score_here(self, vector: np.ndarray, hits: list[dict]) -> list[Hit]:
        """All the hits (fetched with their vectors) scored by numpy, best first."""
        field = self.spec.vector_field
        hits = [h for h in hits if field in h.get("_source", {})]
        if not hits:
            return []
        matrix = np.asarray([h["_source"][field] for h in hits], dtype=np.float32)
        values = similarities(vector, matrix, self.spec.similarity)
        scored = [
            Hit(
                h["_id"],
                float(v),
                {key: value for key, value in h["_source"].items() if key != field},
                similarity=float(v),
            )
            for h, v in zip(hits, values, strict=True)
        ]
        scored.sort(key=lambda h: (h.score, h.doc_id), reverse=True)  # as bodies.SORT
        return scored


class Knn(BatchSearcher):
    """Native approximate k-NN on the vector field; scores converted to the model's similarity.

    `ef_search`: OpenSearch's HNSW ef_search, Elasticsearch's num_candidates per shard. On a
    compressed index, `oversample` x k candidates (default `config.DEFAULT_OVERSAMPLE`) are
    re-scored exactly from the float32 vectors by the engine and the best k kept."""

    def __init__(
        self,
        client: Client,
        index: str,
        encoder: Encoder,
        *,
        ef_search: int | None = None,
        filter: dict | None = None,
        source: bool = True,
        oversample: float | None = None,
    ) -> None:
        if ef_search is not None:
            check_size("ef_search", ef_search)
        check_oversample(oversample)
        self.spec = check_index(client, index, encoder)
        self.backend = backend_of(client)
        self.client = client
        self.index = index
        self.encoder = encoder
        self.ef_search = ef_search
        self.filter = filter
        self.source = source
        self.oversample = oversample

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        check_queries(queries)
        check_size("k", k)
        bodies = self.bodies(self.encoder.encode_queries(list(queries)), k)
        return self.hits(msearch(self.client, self.index, bodies))

    def bodies(self, vectors: np.ndarray, k: int, *, source: bool | None = None) -> list[dict]:
        """One request body per query vector; `source` overrides the searcher's own choice."""
        return [
            knn_body(
                vec,
                k,
                vector_field=self.spec.vector_field,
                ef_search=self.ef_search,
                filter=self.filter,
                source=self.source if source is None else source,
                backend=self.backend,
                compression=self.spec.compression,
                oversample=self.oversample,
            )
            for vec in vectors
        ]

    def hits(self, responses: Sequence[list[dict]]) -> list[list[Hit]]:
        return [knn_hits(resp, self.spec.similarity, self.backend) for resp in responses]


class Hybrid(BatchSearcher):
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
        check_weight(weight)
        check_size("depth", depth)
        self.sparse = sparse
        self.dense = dense
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weight = weight
        self.depth = depth

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        check_queries(queries)
        check_size("k", k)
        depth = max(self.depth, k)  # fewer than k from each side could not fill k
        sparse, dense = self.sparse, self.dense
        if (
            isinstance(sparse, Bm25)
            and isinstance(dense, Knn)
            and (sparse.client, sparse.index) == (dense.client, dense.index)
        ):
            # One encode, then both sides in one _msearch: the cluster runs them side by side.
            # Ids and scores only: the documents of the k fused hits are fetched afterwards,
            # rather than 2 x depth of them of which most are fused away.
            bm25_bodies = sparse.bodies(queries, depth, source=False)
            vectors = dense.encoder.encode_queries(list(queries))
            knn_bodies = dense.bodies(vectors, depth, source=False)
            types = [sparse.search_type] * len(bm25_bodies) + [None] * len(knn_bodies)
            responses = msearch(
                sparse.client, sparse.index, bm25_bodies + knn_bodies, search_types=types
            )
            sparse_runs = sparse.hits(responses[: len(bm25_bodies)])
            dense_runs = dense.hits(responses[len(bm25_bodies) :])
            fused = [self.fuse(s, d)[:k] for s, d in zip(sparse_runs, dense_runs, strict=True)]
            if sparse.source or dense.source:
                fused = with_sources(sparse.client, sparse.index, fused, dense.spec.vector_field)
            return fused
        sparse_runs = sparse.search_many(queries, depth)
        dense_runs = dense.search_many(queries, depth)
        return [self.fuse(s, d)[:k] for s, d in zip(sparse_runs, dense_runs, strict=True)]

    def fuse(self, sparse: Sequence[Hit], dense: Sequence[Hit]) -> list[Hit]:
        """One fused list of the two sides' hits, best first."""
        if self.fusion == "rrf":
            fused = rrf([[h.doc_id for h in sparse], [h.doc_id for h in dense]], k=self.rrf_k)
        else:
            fused = linear(
                [(h.doc_id, h.score) for h in sparse],
                [(h.doc_id, h.score) for h in dense],
                weight=self.weight,
            )
        sparse_by_id = {h.doc_id: h for h in reversed(sparse)}  # the first occurrence wins
        dense_by_id = {h.doc_id: h for h in reversed(dense)}
        out = []
        for doc_id, score in fused:
            bm25, vector = sparse_by_id.get(doc_id), dense_by_id.get(doc_id)
            out.append(
                Hit(
                    doc_id,
                    score,
                    (bm25 or vector).source,  # type: ignore[union-attr]
                    bm25_score=bm25.score if bm25 is not None else None,
                    similarity=vector.score if vector is not None else None,
                )
            )
        return out


def with_sources(
    client: Client, index: str, runs: list[list[Hit]], vector_field: str
) -> list[list[Hit]]:
    """The hits with their documents (without the vector), fetched in one request."""
    ids = list(dict.fromkeys(h.doc_id for run in runs for h in run))
    if not ids:
        return runs
    # A multi-get: documents by id from the shards' stores, no query or fetch phase.
    found = client.mget(index=index, body={"ids": ids}, _source_excludes=vector_field)["docs"]
    docs = {d["_id"]: d.get("_source", {}) for d in found if d.get("found")}
    return [[replace(h, source=docs.get(h.doc_id, {})) for h in run] for run in runs]


def make_searcher(
    mode: str,
    client: Client,
    index: str,
    encoder: Encoder | None = None,
    *,
    candidates: int = 100,
    rerank_on: str = "server",
    ef_search: int | None = None,
    filter: dict | None = None,
    fusion: str = "rrf",
    rrf_k: int = 60,
    weight: float = 0.5,
    depth: int = 100,
    source: bool = True,
    oversample: float | None = None,
) -> Searcher:
    """The searcher of a mode; options that do not apply to the mode are ignored.

    `filter` (a query in the cluster's DSL) restricts every stage; `source=False` returns hits
    without their documents (ids and scores only, as evaluation needs).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "bm25":
        return Bm25(client, index, filter=filter, source=source)
    if encoder is None:
        raise ValueError(f"mode {mode!r} needs an encoder")
    if mode == "rerank":
        return Rerank(
            client,
            index,
            encoder,
            candidates=candidates,
            rerank_on=rerank_on,
            filter=filter,
            source=source,
        )
    knn = Knn(
        client,
        index,
        encoder,
        ef_search=ef_search,
        filter=filter,
        source=source,
        oversample=oversample,
    )
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


def knn_hits(hits: list[dict], similarity: Similarity, backend: Backend) -> list[Hit]:
    """Hits of a k-NN query or exact scoring, their scores turned into the similarity."""
    out = []
    for h in hits:
        value = to_similarity(h["_score"], similarity, backend)
        out.append(Hit(h["_id"], value, h.get("_source", {}), similarity=value))
    return out
