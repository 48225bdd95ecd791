"""The searches' I/O: batched `_msearch`, long-query analysis, and search errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from bridge.backends import Client, backend_of
from bridge.errors import DotbridgeError, error_reason
from bridge.indexes import missing_index
from bridge.search.bodies import ANALYZE_MAX_CHARS, RAW_QUERY_MAX_CHARS, cap_terms
from mappings import TEXT_FIELDS

log = logging.getLogger(__name__)

T = TypeVar("T")

# One _msearch request carries at most MSEARCH_CHUNK searches and asks for at most HITS_PER_MSEARCH
# hits (VECTOR_HITS_PER_MSEARCH when they carry vectors), so that evaluating thousands of queries
# at depth 1000 keeps requests and responses small.
MSEARCH_CHUNK = 64
HITS_PER_MSEARCH = 10_000
VECTOR_HITS_PER_MSEARCH = 2_000


class SearchFailed(DotbridgeError):
    """The cluster refused or failed a search request."""


DFS = "dfs_query_then_fetch"


def msearch(
    client: Client,
    index: str,
    bodies: Sequence[dict],
    *,
    vectors: bool = False,
    search_types: Sequence[str | None] | None = None,
) -> list[list[dict]]:
    """The hits of each body, in order, through as few _msearch requests as the limits allow.

    `search_types` gives each body its `search_type` (DFS for BM25 over several shards). A
    search that failed on any shard or timed out raises: partial results are never returned.
    Both engines' clients take the same `msearch` call.
    """
    product = backend_of(client).product
    out: list[list[dict]] = []
    types = list(search_types) if search_types is not None else [None] * len(bodies)
    budget = VECTOR_HITS_PER_MSEARCH if vectors else HITS_PER_MSEARCH
    largest = max((int(body.get("size", 10)) for body in bodies), default=1)
    chunk = max(1, min(MSEARCH_CHUNK, budget // max(largest, 1)))
    for start in range(0, len(bodies), chunk):
        lines: list[dict] = []
        for offset, body in enumerate(bodies[start : start + chunk], start):
            header: dict[str, str] = {"index": index}
            if types[offset]:
                header["search_type"] = types[offset]
            lines += [header, body]
        for resp in client.msearch(body=lines)["responses"]:
            check_response(index, resp, product)
            out.append(resp["hits"]["hits"])
    return out


def check_response(index: str, resp: dict, product: str = "The cluster") -> None:
    """Raise for a failed search, one that failed on some shards, or one that timed out."""
    if "error" in resp:
        raise search_error(index, resp["error"], product)
    shards = resp.get("_shards") or {}
    if shards.get("failed"):
        failures = shards.get("failures") or [{}]
        reason = error_reason(failures[0].get("reason") or failures[0])
        raise SearchFailed(
            f"The search on index {index!r} failed on {shards['failed']} of "
            f"{shards.get('total')} shards ({reason}); its results would be partial: check the "
            "cluster's health and try again."
        )
    if resp.get("timed_out"):
        raise SearchFailed(
            f"The search on index {index!r} timed out on the cluster; its results would be "
            "partial: try again, or ask for fewer hits."
        )


def bm25_search_type(client: Client, index: str) -> str | None:
    """DFS when the index (or the indexes behind an alias) has several shards, else None.

    BM25 on several shards with the default query_then_fetch scores with each shard's own term
    statistics, so the global top-N would depend on the shard count; DFS uses the whole index's.
    """
    settings = client.indices.get_settings(index=index, name="index.number_of_shards")
    shards = sum(int(body["settings"]["index"]["number_of_shards"]) for body in settings.values())
    return DFS if shards > 1 else None


def bm25_texts(client: Client, index: str, queries: Sequence[str]) -> list[tuple[str, str | None]]:
    """(text, analyzer override) per query, long queries cut to at most MAX_QUERY_TERMS tokens."""
    out: list[tuple[str, str | None]] = []
    for query in queries:
        if len(query) <= RAW_QUERY_MAX_CHARS:
            out.append((query, None))
            continue
        resp = client.indices.analyze(index=index, body=analyze_body(query))
        out.append(capped_text(resp))
    return out


def analyze_body(query: str) -> dict:
    """The `_analyze` request for a long query: its first ANALYZE_MAX_CHARS as the text field."""
    return {"field": TEXT_FIELDS[-1], "text": query[:ANALYZE_MAX_CHARS]}


def capped_text(analyzed: dict) -> tuple[str, str]:
    """(text, analyzer) for BM25 from an `_analyze` response: at most MAX_QUERY_TERMS tokens."""
    tokens = [t["token"] for t in analyzed.get("tokens", [])]
    terms = cap_terms(tokens)
    if len(terms) < len(tokens):
        log.info("long query: %d tokens cut to %d distinct ones", len(tokens), len(terms))
    # The tokens are analysed already: split them on spaces only, as they are.
    return " ".join(terms), "whitespace"


def search_error(index: str, error: Any, product: str = "The cluster") -> DotbridgeError:
    """The user's sentence for the error object of one failed search."""
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "index_not_found_exception":
        return missing_index(index)
    return SearchFailed(f"{product} failed a search on index {index!r}: {error_reason(error)}.")


def check_exists(client: Client, index: str) -> None:
    if not client.indices.exists(index=index):
        raise missing_index(index)


_EXECUTOR: ThreadPoolExecutor | None = None


def background(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Run fn on a worker thread (cluster I/O while the caller encodes); .result() joins it."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dotbridge-search")
    return _EXECUTOR.submit(fn, *args, **kwargs)
