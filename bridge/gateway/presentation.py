"""What a search on a per-mode name (`scifact.knn`, what Discover shows) answers: the rows a
person reads, scored as `dotbridge search --mode MODE` reports them.

- The vector field stays out of `_source` unless the request names it: Discover sends
  `_source: {"excludes": []}`, and 384 or 768 floats per row bury the text. A request that names
  the field (in `_source`, or `includes`) still gets it.
- On `INDEX.knn`, `_score` is the model's similarity (the engine's k-NN score converted, as
  `dotbridge search --mode knn` prints it), not OpenSearch's `(1 + cos) / 2`; rerank and hybrid
  already report the similarity and the fused score, bm25 the BM25 score.

Searches written in neural-search's own syntax (`neural`, `ext.rerank`, `hybrid`) on an index
are answered as the neural-search plugin answers them: `_source` as stored and the engine's k-NN
scores, so that a client moved from the plugin to dotbridge reads the same fields and its
`min_score` thresholds keep their meaning. Pure functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.search.scores import to_similarity

if TYPE_CHECKING:
    from bridge.backends import Backend
    from mappings import Similarity


def names_field(source: Any, field: str) -> bool:
    """Whether a `_source` option names the field itself (a list, a string, or includes)."""
    if isinstance(source, str):
        return source == field
    if isinstance(source, list):
        return field in source
    if isinstance(source, dict):
        return names_field(source.get("includes", source.get("include")), field)
    return False


def without_vector(body: dict, field: str) -> dict:
    """The body with `field` excluded from `_source`, unless the request names it (or asks
    for no `_source` at all)."""
    source = body.get("_source", True)
    if source is False or names_field(source, field):
        return body
    if source is True:
        hidden: dict[str, Any] = {"excludes": [field]}
    elif isinstance(source, (str, list)):
        hidden = {"includes": source if isinstance(source, list) else [source], "excludes": [field]}
    elif isinstance(source, dict):
        key = "exclude" if "exclude" in source and "excludes" not in source else "excludes"
        excludes = source.get(key) or []
        excludes = [excludes] if isinstance(excludes, str) else list(excludes)
        hidden = {**source, key: excludes + ([field] if field not in excludes else [])}
    else:
        return body  # not a _source option the gateway reads: the cluster says what is wrong
    return {**body, "_source": hidden}


def knn_similarities(answer: dict, similarity: Similarity, backend: Backend) -> dict:
    """A k-NN search's answer with each `_score` (and `max_score`) the model's similarity."""
    hits = answer.get("hits")
    if not isinstance(hits, dict):
        return answer

    def convert(score: Any) -> Any:
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            return to_similarity(float(score), similarity, backend)
        return score  # null when sorted by another field

    rows = [
        {**hit, "_score": convert(hit.get("_score"))} if "_score" in hit else hit
        for hit in hits.get("hits", [])
    ]
    out_hits = {**hits, "hits": rows}
    if "max_score" in hits:
        out_hits["max_score"] = convert(hits["max_score"])
    return {**answer, "hits": out_hits}
