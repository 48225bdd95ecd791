"""Per-mode names for Discover: `<index>.<mode>` aliases whose searches run a dotbridge mode.

An index pattern on `scifact.knn` makes Discover send its ordinary search bodies there; the
gateway finds the text typed in the search bar in them (DQL free text or a Lucene query
string), keeps every other clause (time range, filter pills) as a filter, and runs the mode
for that text as `dotbridge search --mode MODE` does. The aliases are real OpenSearch aliases,
so `_field_caps`, `_mapping` and index-pattern creation pass through untouched.
"""

from __future__ import annotations

from typing import Any

from bridge.config import MODES
from bridge.gateway.rewrite import DEFAULT_CANDIDATES, DEFAULT_DEPTH, PRESENTATION_KEYS
from bridge.search.bodies import SORT, bm25_query

ALIAS_MODES = MODES
"""Every search mode has an alias: bm25 ranks Discover's text by dotbridge's BM25 too."""


def alias_name(index: str, mode: str) -> str:
    if mode not in ALIAS_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(ALIAS_MODES)}")
    return f"{index}.{mode}"


def split_alias(target: str | None) -> tuple[str, str] | None:
    """(index, mode) when a search target is one per-mode name, else None."""
    if not target or any(c in target for c in ",*"):
        return None
    base, dot, mode = target.rpartition(".")
    if not dot or not base or mode not in ALIAS_MODES:
        return None
    return base, mode


def is_free_text(clause: Any) -> str | None:
    """The typed text of a free-text clause: DQL's field-less `multi_match`, or a Lucene
    `query_string` without fields; None for anything else (a field query, a filter)."""
    if not isinstance(clause, dict) or len(clause) != 1:
        return None
    ((kind, spec),) = clause.items()
    if not isinstance(spec, dict) or "fields" in spec or "default_field" in spec:
        return None
    text = spec.get("query")
    if kind in ("multi_match", "query_string") and isinstance(text, str) and text.strip():
        return text
    return None


def typed_text(query: Any) -> tuple[str, dict | None] | None:
    """(text typed, restriction) from a Discover query, or None when no text was typed.

    Discover sends `bool` with `must` (Lucene: the query string), `filter` (DQL: the parsed
    query, then the time range and filter pills), `should` and `must_not` (negated pills). The
    free-text clauses, also inside DQL's `and` (a `bool` of `filter`s), make the text; every
    other clause restricts the results. Free text under OR or NOT cannot be separated from its
    logic, so such a query is left as it is (None).
    """
    if not isinstance(query, dict):
        return None
    if "bool" not in query:
        text = is_free_text(query)
        return (text, None) if text else None
    texts: list[str] = []
    kept = _split(query["bool"], texts)
    if kept is None or not texts:
        return None
    bool_query = query["bool"]
    rest: dict[str, Any] = {}
    if kept:
        rest["filter"] = kept
    for key in ("should", "must_not"):
        if bool_query.get(key):
            rest[key] = bool_query[key]
    if "minimum_should_match" in bool_query and rest.get("should"):
        rest["minimum_should_match"] = bool_query["minimum_should_match"]
    return " ".join(texts), ({"bool": rest} if rest else None)


def _split(bool_query: Any, texts: list[str]) -> list | None:
    """The must and filter clauses of an AND that are not free text (texts collects the text);
    None when free text sits under OR or NOT."""
    if not isinstance(bool_query, dict):
        return None
    kept: list = []
    for key in ("must", "filter"):
        clauses = bool_query.get(key) or []
        clauses = clauses if isinstance(clauses, list) else [clauses]
        for clause in clauses:
            text = is_free_text(clause)
            if text is not None:
                texts.append(text)
                continue
            inner = clause.get("bool") if isinstance(clause, dict) and len(clause) == 1 else None
            if isinstance(inner, dict) and set(inner) <= {"must", "filter"}:
                nested = _split(inner, texts)  # DQL's `and`: a bool of filters
                if nested is None:
                    return None
                kept.extend(nested)
                continue
            kept.append(clause)
    # Free text hidden under OR / NOT: not separable.
    for key in ("should", "must_not"):
        if any(is_free_text(c) for c in (bool_query.get(key) or [])):
            return None
    return kept


def mode_body(
    mode: str,
    text: str,
    restriction: dict | None,
    body: dict,
    *,
    vector_field: str,
    start: int,
    size: int,
    bm25: tuple[str, str | None],
) -> dict:
    """The search a mode runs for Discover's text: the bodies `dotbridge search --mode MODE`
    sends (BM25 on title and text, k-NN, fused or re-ranked), restricted by the other clauses,
    with Discover's paging and display options (highlight, version, fields...) kept.

    `bm25` is (text, analyzer) for the BM25 side, a long text already cut to its terms.
    """
    out: dict[str, Any] = {key: body[key] for key in PRESENTATION_KEYS if key in body}
    out.update({"from": start, "size": size, "sort": SORT})
    bm25_text, analyzer = bm25
    sparse = bm25_query(bm25_text, analyzer=analyzer, filter=restriction)
    wanted = start + size
    if mode == "bm25":
        out["query"] = sparse
    elif mode == "knn":
        out["query"] = neural(vector_field, text, max(wanted, 1), restriction)
    elif mode == "rerank":
        # The command's first stage whatever the page size (Discover asks for 500 rows): the
        # BM25 top 100 re-scored, so the rows are `dotbridge search --mode rerank`'s, at most 100.
        out["query"] = sparse
        out["size"] = _within(start, size, DEFAULT_CANDIDATES)
        out["ext"] = {
            "rerank": {"query_context": {"query_text": text}},
            "dotbridge": {"candidates": DEFAULT_CANDIDATES},
        }
    elif mode == "hybrid":
        # Likewise each side's top 100, fused, as the command's default --depth; the page holds
        # at most that many rows (a deeper page would widen the depth and change the fusion).
        dense = neural(vector_field, text, DEFAULT_DEPTH, restriction)
        out["query"] = {"hybrid": {"queries": [sparse, dense]}}
        out["size"] = _within(start, size, DEFAULT_DEPTH)
        out["ext"] = {"dotbridge": {"depth": DEFAULT_DEPTH}}
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(ALIAS_MODES)}")
    for key in ("aggs", "aggregations"):  # Discover's histogram, when the pattern has a time field
        if key in body:
            out[key] = body[key]
    return out


def _within(start: int, size: int, depth: int) -> int:
    """The rows of a page from `start` that a ranking of `depth` documents can fill."""
    return max(0, min(size, depth - start))


def neural(field: str, text: str, k: int, restriction: dict | None) -> dict:
    params: dict[str, Any] = {"query_text": text, "k": k}
    if restriction:
        params["filter"] = restriction
    return {"neural": {field: params}}
