"""A per-mode name searched with a sort on a field: Discover on an index pattern WITH a time
field, which sorts by that field (newest first) and draws a date histogram.

The behaviour chosen: the typed text still selects by the model, and the caller's sort orders
what it selected. The mode ranks the top `from + size` documents for the text (inside the time
range and the filter pills) exactly as `dotbridge search --mode MODE` does; those documents are
then fetched by id in the caller's sort (the cluster sorts them, with its own rules for missing
values and `unmapped_type`), and each keeps the mode's `_score`, so the score column still
shows how well it matches. Sorting by `_score` in Discover (or a pattern without a time field)
gives the mode's own order. The histogram and the total count describe what the mode's first
stage matched (for k-NN: the k nearest; for bm25, rerank and hybrid: the text's BM25 matches).

Without typed text the search passes through untouched (Discover's ordinary time-sorted view).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bridge.gateway.presentation import without_vector
from bridge.gateway.responses import search_response
from bridge.gateway.rewrite import PRESENTATION_KEYS, paging
from bridge.search.bodies import SORT

if TYPE_CHECKING:
    from bridge.gateway.executor import Call, Forward
    from bridge.gateway.models import IndexInfo

Runner = Callable[["Call", "IndexInfo", dict, "str | None"], Awaitable["Forward | dict | None"]]


def field_sort(body: dict) -> list | None:
    """The caller's sort when it orders by something other than `_score` first; else None."""
    sort = body.get("sort")
    if sort is None:
        return None
    order = sort if isinstance(sort, list) else [sort]
    if not order:
        return None
    first = order[0]
    key = first if isinstance(first, str) else next(iter(first), None)
    if not isinstance(first, (str, dict)) or key in ("_score", None):
        return None
    return order


async def run_sorted(
    call: Call, info: IndexInfo, body: dict, mode: str, order: list, run: Runner
) -> Forward | dict | None:
    """The mode's top `from + size` for the typed text, in the caller's field sort."""
    from bridge.gateway.executor import Forward

    began = time.perf_counter()
    start, size = paging(body, call.params)
    ranked_body = {**body, "sort": SORT, "from": 0, "size": start + size}
    result = await run(call, info, ranked_body, mode)
    if result is None:
        return None  # nothing typed: the cluster's own time-sorted answer
    if isinstance(result, Forward):
        result = await call.upstream.call(
            "POST",
            f"/{call.raw_target}/_search",
            call.caller,
            result.body,
            params=result.query(call.params),
        )
    ranked = [(h["_id"], h.get("_score")) for h in result["hits"]["hits"]]
    scores = dict(ranked)
    hits: list[dict] = []
    if ranked and size > 0:
        fetch: dict[str, Any] = {key: body[key] for key in PRESENTATION_KEYS if key in body}
        fetch.update(
            {
                "query": {"ids": {"values": [doc_id for doc_id, _ in ranked]}},
                "from": start,
                "size": size,
                "sort": order,
            }
        )
        if "highlight" in fetch and isinstance(fetch["highlight"], dict):
            fetch["highlight"] = {**fetch["highlight"], "highlight_query": _text_query(body)}
        resp = await call.search(without_vector(fetch, info.spec.vector_field))
        for hit in resp["hits"]["hits"]:
            hits.append({**hit, "_score": scores.get(hit["_id"])})
    total = result["hits"].get("total", len(ranked))
    total_value = total["value"] if isinstance(total, dict) else int(total)
    return search_response(
        took=time.perf_counter() - began,
        first=result,
        total=total_value,
        hits=hits,
        max_score=result["hits"].get("max_score"),
        params=call.params,
    )


def _text_query(body: dict) -> dict:
    """Highlighting marks the caller's own query's terms (the page is fetched by id)."""
    query = body.get("query")
    return query if isinstance(query, dict) else {"match_all": {}}
