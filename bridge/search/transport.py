"""The searches' I/O: batched `_msearch`, long-query analysis, and search errors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opensearchpy import OpenSearch

from bridge.errors import BadInput, DotbridgeError, error_reason
from bridge.search.bodies import ANALYZE_MAX_CHARS, RAW_QUERY_MAX_CHARS, cap_terms
from mappings import TEXT_FIELDS

log = logging.getLogger(__name__)

# One _msearch request carries at most MSEARCH_CHUNK searches and asks for at most HITS_PER_MSEARCH
# hits (VECTOR_HITS_PER_MSEARCH when they carry vectors), so that evaluating thousands of queries
# at depth 1000 keeps requests and responses small.
MSEARCH_CHUNK = 64
HITS_PER_MSEARCH = 10_000
VECTOR_HITS_PER_MSEARCH = 2_000


class SearchFailed(DotbridgeError):
    """OpenSearch refused or failed a search request."""


def msearch(
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
                raise search_error(index, resp["error"])
            out.append(resp["hits"]["hits"])
    return out


def bm25_texts(
    client: OpenSearch, index: str, queries: Sequence[str]
) -> list[tuple[str, str | None]]:
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


def search_error(index: str, error: Any) -> DotbridgeError:
    """The user's sentence for the error object of one failed search."""
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "index_not_found_exception":
        return missing_index(index)
    return SearchFailed(f"OpenSearch failed a search on index {index!r}: {error_reason(error)}.")


def missing_index(index: str) -> BadInput:
    return BadInput(
        f"Index {index!r} does not exist: build it first with `dotbridge ingest` "
        f"(--index {index}), or pass the --index of an existing one."
    )


def check_exists(client: OpenSearch, index: str) -> None:
    if not client.indices.exists(index=index):
        raise missing_index(index)
