"""Reading and rewriting search bodies: pure functions, no I/O (unit-tested without a server).

The gateway understands neural-search's syntax: a `neural` clause wherever a query may stand,
`ext.rerank` on any query, a top-level `hybrid` query; and its own `ext.dotbridge` options
(candidates, depth, fusion, rrf_k, weight). Everything else in a body is OpenSearch's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.config import FUSIONS, MAX_RESULTS
from bridge.errors import BadInput
from bridge.gateway.errors import BadRequest
from bridge.search.bodies import check_query, engine, floats
from bridge.search.fusion import check_weight

if TYPE_CHECKING:
    from bridge.backends import Backend

# Bytes that every body with a dotbridge feature contains: bodies without them pass through
# without being parsed.
MARKERS = (b'"neural"', b'"rerank"', b'"hybrid"')

NEURAL_KEYS = frozenset(
    {
        "query_text",
        "model_id",
        "k",
        "filter",
        "boost",
        "_name",
        "min_score",
        "max_distance",
        "method_parameters",
        "rescore",
        "expand_nested_docs",
    }
)
DEFAULT_K = 10  # neural-search's default
DEFAULT_CANDIDATES = 100
DEFAULT_DEPTH = 100

# Keys of a body that a rerank or hybrid search takes: how hits are shown (applied to the page
# returned), what the first stage keeps (filters, aggregations), and paging.
PRESENTATION_KEYS = (
    "_source",
    "highlight",
    "stored_fields",
    "docvalue_fields",
    "script_fields",
    "fields",
    "version",
    "seq_no_primary_term",
    "explain",
)
FIRST_STAGE_KEYS = ("post_filter", "min_score", "timeout", "terminate_after", "indices_boost")
AGGREGATION_KEYS = ("aggs", "aggregations", "suggest")
PAGING_KEYS = ("query", "from", "size", "sort", "ext", "track_total_hits", "track_scores")
STAGED_KEYS = frozenset(PRESENTATION_KEYS + FIRST_STAGE_KEYS + AGGREGATION_KEYS + PAGING_KEYS)


def has_markers(raw: bytes) -> bool:
    """Whether a body may use a dotbridge feature (a cheap test before parsing it)."""
    return any(marker in raw for marker in MARKERS)


# ---- neural clauses ----------------------------------------------------------------------------


def neural_clause(node: Any) -> tuple[str, dict] | None:
    """(vector field, parameters) when the node is `{"neural": {field: {...}}}`.

    A field that happens to be called `neural` (`{"match": {"neural": ...}}`) is no clause: its
    value is not an object of one field holding an object of parameters. A clause without
    `query_text` is still one, so that `check_neural` names what it lacks (the cluster would
    only say `unknown query [neural]`).
    """
    if not (isinstance(node, dict) and len(node) == 1 and "neural" in node):
        return None
    inner = node["neural"]
    if not (isinstance(inner, dict) and len(inner) == 1):
        return None
    ((field, params),) = inner.items()
    if not isinstance(params, dict):
        return None
    return field, params


def transform(node: Any, fn: Callable[[Any], Any | None]) -> Any:
    """A copy of a JSON tree in which each node for which `fn` returns a value is replaced by it."""
    replaced = fn(node)
    if replaced is not None:
        return replaced
    if isinstance(node, dict):
        return {key: transform(value, fn) for key, value in node.items()}
    if isinstance(node, list):
        return [transform(value, fn) for value in node]
    return node


def neural_texts(body: Any) -> list[str]:
    """The query texts of every neural clause in a body, checked, in order of appearance."""
    texts: list[str] = []

    def visit(node: Any) -> None:
        clause = neural_clause(node)
        if clause is not None:
            texts.append(check_neural(*clause))
            return
        if isinstance(node, dict):
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(body)
    return texts


def check_neural(field: str, params: dict) -> str:
    """The clause's query text; BadRequest naming what is wrong with the clause."""
    if "query_image" in params:
        raise BadRequest(
            f"The neural clause on {field!r} asks for query_image: dotbridge serves text "
            "models only, give query_text."
        )
    unknown = sorted(set(params) - NEURAL_KEYS)
    if unknown:
        raise BadRequest(
            f"The neural clause on {field!r} has unknown parameters {unknown}; "
            f"it takes: {', '.join(sorted(NEURAL_KEYS))}."
        )
    if "query_text" not in params:
        raise BadRequest(
            f'The neural clause on {field!r} has no "query_text": give the text to search with, '
            f'as {{"neural": {{"{field}": {{"query_text": "...", "k": 10}}}}}}.'
        )
    if "k" in params:
        check_count(f"neural k on {field!r}", params["k"])
    return query_text(params["query_text"])


def replace_neural(
    body: Any,
    vectors: Mapping[str, np.ndarray],
    vector_field: str,
    backend: Backend | None = None,
    compression: str = "none",
) -> Any:
    """The body with every neural clause turned into the engine's `knn` query (OpenSearch's
    unless `backend` says otherwise) on its text's vector; on a compressed index (the index's
    `_meta`) widened and re-scored exactly from the float32 vectors, as `--mode knn` does."""

    def swap(node: Any) -> dict | None:
        clause = neural_clause(node)
        if clause is None:
            return None
        field, params = clause
        if field != vector_field:
            raise BadRequest(
                f"The neural clause searches field {field!r}, but the index's vectors are in "
                f"{vector_field!r}: name that field."
            )
        vector = vectors[params["query_text"]]
        return knn_from_neural(field, params, vector, backend, compression=compression)

    return transform(body, swap)


def knn_from_neural(
    field: str,
    params: dict,
    vector: np.ndarray,
    backend: Backend | None = None,
    *,
    compression: str = "none",
) -> dict:
    """The k-NN query a neural clause stands for, in the engine's syntax (OpenSearch: k, or a
    radial min_score / max_distance; Elasticsearch: k); BadRequest for what it cannot take."""
    try:
        return engine(backend).neural_knn(
            field, params, floats(vector), DEFAULT_K, compression=compression
        )
    except BadInput as exc:
        raise BadRequest(exc.message) from None


def with_filter(query: dict, restriction: dict | None) -> dict:
    """A query restricted by a filter: inside the k-NN search for a neural clause (so that k
    hits still come back), else as `bool.filter`, the shape dotbridge's BM25 bodies use."""
    if not restriction:
        return query
    clause = neural_clause(query)
    if clause is not None:
        field, params = clause
        existing = params.get("filter")
        combined = {"bool": {"filter": [existing, restriction]}} if existing else restriction
        return {"neural": {field: {**params, "filter": combined}}}
    return {"bool": {"must": [query], "filter": [restriction]}}


# ---- ext.rerank, ext.dotbridge, hybrid -----------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """`ext.dotbridge`: how many hits rerank re-scores and hybrid takes per side, and fusion."""

    candidates: int | None = None
    depth: int | None = None
    fusion: str = "rrf"
    rrf_k: int = 60
    weight: float = 0.5


def options(body: dict) -> Options:
    ext = body.get("ext") or {}
    raw = ext.get("dotbridge") if isinstance(ext, dict) else None
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise BadRequest("ext.dotbridge must be an object of options.")
    unknown = sorted(set(raw) - set(Options.__dataclass_fields__))
    if unknown:
        raise BadRequest(
            f"ext.dotbridge has unknown options {unknown}; it takes: "
            f"{', '.join(Options.__dataclass_fields__)}."
        )
    opts = Options(**raw)
    for name in ("candidates", "depth"):
        value = getattr(opts, name)
        if value is not None:
            check_count(f"ext.dotbridge.{name}", value)
    if opts.fusion not in FUSIONS:
        raise BadRequest(f"ext.dotbridge.fusion must be one of: {', '.join(FUSIONS)}.")
    if isinstance(opts.rrf_k, bool) or not isinstance(opts.rrf_k, int) or opts.rrf_k < 0:
        raise BadRequest("ext.dotbridge.rrf_k must be an integer of 0 or more.")
    try:
        check_weight(opts.weight)
    except ValueError:
        raise BadRequest("ext.dotbridge.weight must be a number from 0 to 1.") from None
    return opts


def rerank_text(body: dict) -> str | None:
    """The query text of `ext.rerank.query_context` (`query_text` or `query_text_path`)."""
    ext = body.get("ext")
    if not isinstance(ext, dict) or "rerank" not in ext:
        return None
    rerank = ext["rerank"]
    context = rerank.get("query_context") if isinstance(rerank, dict) else None
    if not isinstance(context, dict):
        raise BadRequest(
            'ext.rerank needs a query_context: {"query_text": "..."} or {"query_text_path": ...}.'
        )
    if "query_text" in context:
        return query_text(context["query_text"])
    path = context.get("query_text_path")
    if not isinstance(path, str) or not path:
        raise BadRequest("ext.rerank.query_context needs query_text or query_text_path.")
    return query_text(value_at(body, path))


def value_at(body: Any, path: str) -> Any:
    """The value at a dotted path of the body (`query.match.text.query`); BadRequest if none."""
    node = body
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise BadRequest(f"ext.rerank query_text_path {path!r} leads to nothing in the body.")
    if not isinstance(node, str):
        raise BadRequest(f"ext.rerank query_text_path {path!r} leads to no text.")
    return node


@dataclass(frozen=True)
class Hybrid:
    """A top-level hybrid query: its sub-queries, the depth it asks and a filter for all."""

    queries: list[dict]
    depth: int | None
    filter: dict | None


def hybrid_query(query: Any) -> Hybrid | None:
    """The hybrid query at the top of a body's query; BadRequest when one sits deeper."""
    if not isinstance(query, dict):
        return None
    if "hybrid" not in query:
        if contains_key(query, "hybrid"):
            raise BadRequest("A hybrid query must be the top-level query of the search.")
        return None
    spec = query["hybrid"]
    queries = spec.get("queries") if isinstance(spec, dict) else None
    if not (isinstance(queries, list) and queries and all(isinstance(q, dict) for q in queries)):
        raise BadRequest('A hybrid query needs "queries": a list of at least one query.')
    unknown = sorted(set(spec) - {"queries", "pagination_depth", "filter"})
    if unknown:
        raise BadRequest(f"The hybrid query has unknown parameters {unknown}.")
    depth = spec.get("pagination_depth")
    if depth is not None:
        check_count("hybrid pagination_depth", depth)
    return Hybrid(queries=queries, depth=depth, filter=spec.get("filter"))


def contains_key(node: Any, key: str) -> bool:
    if isinstance(node, dict):
        return any(k == key or contains_key(v, key) for k, v in node.items())
    if isinstance(node, list):
        return any(contains_key(v, key) for v in node)
    return False


def strip_ext(body: dict) -> dict:
    """The body without the gateway's `ext` entries (a cluster without plugins refuses them)."""
    ext = body.get("ext")
    if not isinstance(ext, dict) or not ({"rerank", "dotbridge"} & ext.keys()):
        return body
    rest = {k: v for k, v in ext.items() if k not in ("rerank", "dotbridge")}
    out = {k: v for k, v in body.items() if k != "ext"}
    if rest:
        out["ext"] = rest
    return out


def check_staged(body: dict, what: str) -> None:
    """A rerank or hybrid search runs in stages: refuse what cannot be staged, by name."""
    refused = sorted(set(body) - STAGED_KEYS)
    if refused:
        raise BadRequest(f"{what} cannot be combined with {', '.join(refused)}: leave them out.")


def paging(body: dict, params: Mapping[str, str]) -> tuple[int, int]:
    """(from, size) of a search: the body's, else the query string's, else 0 and 10."""
    values = []
    for key, default in (("from", 0), ("size", 10)):
        raw = body.get(key, params.get(key, default))
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise BadRequest(f"{key} must be a whole number, got {raw!r}.") from None
        if value < 0:
            raise BadRequest(f"{key} must be 0 or more, got {value}.")
        values.append(value)
    start, size = values
    if start + size > MAX_RESULTS:
        raise BadRequest(f"from + size must be at most {MAX_RESULTS}, got {start + size}.")
    return start, size


def query_text(value: Any) -> str:
    """A query text as dotbridge search checks it, refused as a bad request."""
    try:
        return check_query(value)
    except BadInput as exc:
        raise BadRequest(exc.message) from None


def check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_RESULTS}, got {value!r}.")
