"""Running a search with dotbridge features against the cluster, with the caller's credentials.

A search whose only feature is `neural` becomes one ordinary search (its clauses turned into
k-NN queries) and the cluster's answer goes back as it is. `ext.rerank` and `hybrid` run in
stages, with the same bodies, fusion and scores as `dotbridge search`:

- rerank: the query's global top N (sorted by score, then doc id), re-scored exactly over
  exactly those ids (OpenSearch: the `knn_score` script; Elasticsearch: a `knn` query filtered
  to them); the page is cut from that ranking;
- hybrid: each sub-query's top `depth` (concurrent searches), fused (RRF, or min-max linear), the
  page fetched by id with the caller's display options (highlight, fields, version...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.gateway.discover import mode_body, typed_text
from bridge.gateway.errors import BadRequest
from bridge.gateway.fieldsort import field_sort, run_sorted
from bridge.gateway.hitkeys import hit_key, key_id, only, restricted
from bridge.gateway.models import IndexInfo
from bridge.gateway.presentation import knn_similarities, without_vector
from bridge.gateway.responses import search_response
from bridge.gateway.rewrite import (
    AGGREGATION_KEYS,
    DEFAULT_CANDIDATES,
    DEFAULT_DEPTH,
    FIRST_STAGE_KEYS,
    PRESENTATION_KEYS,
    Hybrid,
    Options,
    check_staged,
    hybrid_query,
    neural_clause,
    neural_texts,
    options,
    paging,
    replace_neural,
    rerank_text,
    strip_ext,
    transform,
    with_filter,
)
from bridge.gateway.upstream import Upstream
from bridge.search.bodies import RAW_QUERY_MAX_CHARS, SORT, exact_score_body
from bridge.search.fusion import linear, rrf
from bridge.search.scores import to_similarity
from bridge.search.transport import DFS, analyze_body, capped_text

# Query-string parameters a staged search passes on to its own requests: where and how to
# search, never what to return (paging, source, totals: the gateway assembles those).
KEPT_PARAMS = frozenset(
    {
        "preference",
        "routing",
        "ignore_unavailable",
        "allow_no_indices",
        "expand_wildcards",
        "timeout",
        "request_cache",
        "ignore_throttled",
        "allow_partial_search_results",
        "search_type",
        "max_concurrent_shard_requests",
        "pre_filter_shard_size",
        "batched_reduce_size",
        "cancel_after_time_interval",
    }
)


@dataclass(frozen=True)
class Call:
    """One caller's search: where it goes and with whose headers."""

    upstream: Upstream
    caller: Mapping[str, str]
    raw_target: str
    params: Mapping[str, str]

    def kept(self, *extra: str, dfs: bool = False) -> dict[str, str]:
        kept = {k: v for k, v in self.params.items() if k in KEPT_PARAMS or k in extra}
        if dfs and "search_type" not in kept:
            kept["search_type"] = DFS
        return kept

    async def search(self, body: dict, *extra: str, dfs: bool = False) -> dict:
        """One search; with `dfs`, scored by the whole index's term statistics unless the
        caller chose a search_type (as `dotbridge search` does on several shards)."""
        params = self.kept(*extra, dfs=dfs)
        return await self.upstream.call(
            "POST", f"/{self.raw_target}/_search", self.caller, body, params=params
        )

    async def searches(self, bodies: list[dict], *extra: str, dfs: list[bool]) -> list[dict]:
        """Several searches at once (concurrent `_search` requests take every query-string
        parameter, which `_msearch` does not)."""
        jobs = (self.search(body, *extra, dfs=d) for body, d in zip(bodies, dfs, strict=True))
        return list(await asyncio.gather(*jobs))


@dataclass(frozen=True)
class Forward:
    """A single search to send in place of the caller's: `body`, and the query string less
    `drop` (a `q` the gateway turned into the body) plus `add` where the caller set none."""

    body: dict
    drop: tuple[str, ...] = ()
    add: Mapping[str, str] = field(default_factory=dict)

    def query(self, params: Mapping[str, str]) -> dict[str, str]:
        """The caller's query-string parameters as this search sends them."""
        out = {k: v for k, v in params.items() if k not in self.drop}
        return {**self.add, **out}


async def run(call: Call, info: IndexInfo, body: dict, mode: str | None) -> Forward | dict | None:
    """The caller's search with its dotbridge features; None: nothing for the gateway to do
    (a per-mode name searched without typed text), so the search passes through."""
    if mode is not None and (order := field_sort(body)) is not None:
        return await run_sorted(call, info, body, mode, order, run)  # a time-field pattern
    began = time.perf_counter()  # `took` counts encoding too
    start, size = paging(body, call.params)
    drop: tuple[str, ...] = ()
    if mode is not None:
        found = typed_text(body.get("query"))
        if found is None and "q" in call.params and "query" not in body:
            found, drop = (call.params["q"], None), ("q",)
        if found is None:
            return None
        text, restriction = found
        bm25 = await bm25_text(call, text)
        body = mode_body(
            mode,
            text,
            restriction,
            body,
            vector_field=info.spec.vector_field,
            start=start,
            size=size,
            bm25=bm25,
        )
        body = without_vector(body, info.spec.vector_field)
        start, size = paging(body, call.params)  # a mode may show fewer rows than asked
    rerank = rerank_text(body)
    hybrid = hybrid_query(body.get("query"))
    opts = options(body)
    texts = neural_texts(body) + ([rerank] if rerank is not None else [])
    vectors = await info.model.vectors(texts) if texts else {}
    backend = call.upstream.backend
    if rerank is None and hybrid is None:
        rewritten = strip_ext(
            replace_neural(body, vectors, info.spec.vector_field, backend, info.spec.compression)
        )
        forward = Forward(rewritten, drop, {"search_type": DFS} if info.shards > 1 else {})
        if mode != "knn":
            return forward
        # INDEX.knn: scored as `dotbridge search --mode knn` reports it (see presentation)
        answer = await call.upstream.call(
            "POST",
            f"/{call.raw_target}/_search",
            call.caller,
            rewritten,
            params=forward.query(call.params),
        )
        return knn_similarities(answer, info.spec.similarity, backend)
    if "scroll" in call.params:
        raise BadRequest("A rerank or hybrid search cannot scroll: page with from and size.")
    check_staged(body, "ext.rerank" if rerank is not None else "A hybrid query")
    ranked, first = None, None
    if hybrid is not None:
        ranked, first = await fused(call, info, body, hybrid, opts, vectors, start + size)
    if rerank is not None:
        return await reranked(call, info, body, opts, vectors, rerank, ranked, first, began)
    assert ranked is not None and first is not None
    return await page_by_id(call, body, ranked, first, began, highlight_from(body))


async def bm25_text(call: Call, text: str) -> tuple[str, str | None]:
    """The BM25 side's text as `dotbridge search` sends it: a long one cut to its terms."""
    if len(text) <= RAW_QUERY_MAX_CHARS:
        return text, None
    analyzed = await call.upstream.call(
        "POST", f"/{call.raw_target}/_analyze", call.caller, analyze_body(text)
    )
    return capped_text(analyzed)


def first_stage(body: dict, query: Any, size: int, *, aggregations: bool) -> dict:
    """A stage that ranks ids over the whole index: no documents, the ranking of dotbridge."""
    out = {"query": query, "size": size, "_source": False, "sort": SORT}
    keys = FIRST_STAGE_KEYS + (AGGREGATION_KEYS if aggregations else ())
    out.update({key: body[key] for key in keys if key in body})
    if aggregations and "track_total_hits" in body:
        out["track_total_hits"] = body["track_total_hits"]
    return out


async def fused(
    call: Call,
    info: IndexInfo,
    body: dict,
    hybrid: Hybrid,
    opts: Options,
    vectors: Mapping[str, np.ndarray],
    wanted: int,
) -> tuple[list[tuple[str, float]], dict]:
    """The hybrid query's fused ranking (doc id, fused score), and its first sub-search."""
    depth = max(opts.depth or hybrid.depth or DEFAULT_DEPTH, wanted)
    dense = [neural_clause(q) is not None for q in hybrid.queries]
    bodies = []
    for i, (query, is_dense) in enumerate(zip(hybrid.queries, dense, strict=True)):
        if is_dense:
            field, params = neural_clause(query)  # type: ignore[misc]
            query = {"neural": {field: {"k": depth, **params}}}
        query = with_filter(query, hybrid.filter)
        query = replace_neural(
            query, vectors, info.spec.vector_field, call.upstream.backend, info.spec.compression
        )
        bodies.append(first_stage(body, query, depth, aggregations=i == 0))
    many = info.shards > 1
    responses = await call.searches(bodies, "typed_keys", dfs=[many and not d for d in dense])
    runs = []
    for resp, is_dense in zip(responses, dense, strict=True):
        hits = resp["hits"]["hits"]
        if is_dense:  # as Knn reports them: the model's similarity, not the engine's score
            sim, backend = info.spec.similarity, call.upstream.backend
            runs.append([(hit_key(h), to_similarity(h["_score"], sim, backend)) for h in hits])
        else:
            runs.append([(hit_key(h), float(h["_score"])) for h in hits])
    if opts.fusion == "rrf":
        ranking = rrf([[doc_id for doc_id, _ in run] for run in runs], k=opts.rrf_k)
    else:
        if len(runs) != 2 or sum(dense) != 1:
            raise BadRequest(
                "Linear fusion takes exactly two sub-queries, one neural and one not: "
                'use "fusion": "rrf" for other mixes.'
            )
        sparse_run, dense_run = (runs[1], runs[0]) if dense[0] else (runs[0], runs[1])
        ranking = linear(sparse_run, dense_run, weight=opts.weight)
    return ranking, responses[0]


async def reranked(
    call: Call,
    info: IndexInfo,
    body: dict,
    opts: Options,
    vectors: Mapping[str, np.ndarray],
    text: str,
    ranked: list[tuple[str, float]] | None,
    first: dict | None,
    began: float,
) -> dict:
    """The global top N re-scored by the exact similarity, then paged, as `--mode rerank`."""
    start, size = paging(body, call.params)
    n = opts.candidates or max(DEFAULT_CANDIDATES, start + size)
    if ranked is None:
        query = body.get("query") or {"match_all": {}}
        query = replace_neural(
            query, vectors, info.spec.vector_field, call.upstream.backend, info.spec.compression
        )
        stage = first_stage(body, query, n, aggregations=True)
        first = await call.search(stage, "typed_keys", dfs=info.shards > 1)
        ids = [hit_key(h) for h in first["hits"]["hits"]]
    else:
        ids = [doc_id for doc_id, _ in ranked[:n]]
    assert first is not None
    hits: list[dict] = []
    max_score = None
    if ids and start + size > 0:
        second = exact_score_body(
            vectors[text],
            list(dict.fromkeys(key_id(key) for key in ids)),
            min(start + size, len(ids)),
            similarity=info.spec.similarity,
            vector_field=info.spec.vector_field,
            backend=call.upstream.backend,
            compression=info.spec.compression,
        )
        second["query"] = restricted(second["query"], ids)  # (id, index), not the id alone
        second.update(display(body, highlight_from(body)))
        resp = await call.search(second)
        for h in resp["hits"]["hits"]:
            hit = {k: v for k, v in h.items() if k != "sort"}
            hit["_score"] = to_similarity(h["_score"], info.spec.similarity, call.upstream.backend)
            hits.append(hit)
        max_score = hits[0]["_score"] if hits else None
        hits = hits[start:]
    took = time.perf_counter() - began
    return search_response(
        took=took, first=first, total=len(ids), hits=hits, max_score=max_score, params=call.params
    )


async def page_by_id(
    call: Call,
    body: dict,
    ranked: list[tuple[str, float]],
    first: dict,
    began: float,
    highlight_query: dict | None,
) -> dict:
    """The page of a ranking fetched by id with the caller's display options, in rank order."""
    start, size = paging(body, call.params)
    page = ranked[start : start + size]
    hits = []
    if page:
        fetch = {"query": only(key for key, _ in page), "size": len(page)}
        fetch.update(display(body, highlight_query))
        resp = await call.search(fetch)
        by_key = {hit_key(h): h for h in resp["hits"]["hits"]}
        for key, score in page:
            if key in by_key:  # else deleted since it was ranked
                hit = {k: v for k, v in by_key[key].items() if k != "sort"}
                hit["_score"] = score
                hits.append(hit)
    return search_response(
        took=time.perf_counter() - began,
        first=first,
        total=len(ranked),
        hits=hits,
        max_score=ranked[0][1] if ranked else None,
        params=call.params,
    )


def display(body: dict, highlight_query: dict | None) -> dict:
    """The caller's display options for the fetched page; highlighting by the text query,
    since the page itself is fetched by id."""
    out = {key: body[key] for key in PRESENTATION_KEYS if key in body}
    highlight = out.get("highlight")
    if isinstance(highlight, dict) and highlight_query and "highlight_query" not in highlight:
        out["highlight"] = {**highlight, "highlight_query": highlight_query}
    return out


def highlight_from(body: dict) -> dict | None:
    """The query whose terms highlighting marks: the caller's query (a hybrid's sub-queries
    as alternatives) with its neural clauses left out, since vectors have no terms."""
    query = body.get("query")
    if not isinstance(query, dict):
        return None
    hybrid = hybrid_query(query)
    if hybrid is not None:
        query = {"bool": {"should": hybrid.queries}}
    return transform(query, lambda node: {"match_all": {}} if neural_clause(node) else None)
