"""The search requests OpenSearch Dashboards 3.x Discover sends for the text in its search bar,
rebuilt from its sources (github.com/opensearch-project/OpenSearch-Dashboards, read, not copied):

- src/plugins/discover/public/application/view_components/utils/update_search_source.ts sets
  the fields: `sort` (without a time field: `_score` desc), `size` (discover:sampleSize, 500),
  `query`, `highlightAll: true`, `version: true`, `filter` (the filter pills; a time-range filter
  from the parent search source when the pattern has a time field), `aggs` (the histogram);
- src/plugins/data/common/search/search_source/search_source.ts `flatten()` adds
  `stored_fields` (["*"]), `script_fields` ({}), `docvalue_fields`, `_source` (the pattern's
  source filters: {"excludes": []}), builds `query` with buildOpenSearchQuery and `highlight`
  with getHighlightRequest;
- src/plugins/data/common/opensearch_query/opensearch_query/build_opensearch_query.ts: the
  query is `bool` {must, filter, should, must_not}: DQL's clauses, Lucene's, the filters';
- DQL: from_kuery.ts wraps the parsed query in an `and` node, kuery/functions/and.ts makes it
  `bool.filter`, kuery/functions/is.ts turns field-less free text into
  `multi_match {type: best_fields (phrase when quoted), query, lenient: true}`;
- Lucene: from_lucene.ts puts it in `must`; lucene_string_to_dsl.ts makes `query_string
  {query}`, decorate_query.ts adds query:queryString:options (`analyze_wildcard: true`) and
  the browser's `time_zone`;
- the query string of `POST /<pattern>/_search`: `preference` from
  src/plugins/data/common/search/search_source/fetch/get_search_params.ts;
  `ignore_unavailable`, `track_total_hits` from
  src/plugins/data/server/search/opensearch_search/get_default_search_params.ts, and
  `timeout` (the shard timeout) from the same file, used by opensearch_search_strategy.ts;
- highlight: src/plugins/data/common/field_formats/utils/highlight/highlight_request.ts: `*`
  fields, the `@opensearch-dashboards-highlighted-field@` tags (highlight_tags.ts),
  fragment_size 2^31 - 1.
"""

from __future__ import annotations

from typing import Any

SAMPLE_SIZE = 500
PARAMS = "?ignore_unavailable=true&track_total_hits=true&timeout=30000ms&preference=1767225600000"
HIGHLIGHT = {
    "pre_tags": ["@opensearch-dashboards-highlighted-field@"],
    "post_tags": ["@/opensearch-dashboards-highlighted-field@"],
    "fields": {"*": {}},
    "fragment_size": 2147483647,
}


def _bool(*, must: list, filter: list) -> dict:
    """buildOpenSearchQuery's shape: all four lists, always present."""
    return {"bool": {"must": must, "filter": filter, "should": [], "must_not": []}}


def _body(query: dict, size: int) -> dict[str, Any]:
    return {
        "sort": [{"_score": {"order": "desc"}}],
        "size": size,
        "version": True,
        "stored_fields": ["*"],
        "script_fields": {},
        "docvalue_fields": [],
        "_source": {"excludes": []},
        "query": query,
        "highlight": HIGHLIGHT,
    }


def dql_body(text: str, *, filters: list[dict] | None = None, size: int = SAMPLE_SIZE) -> dict:
    """DQL (the default language): free text in `bool.filter`, then the filter pills."""
    clause = {"multi_match": {"type": "best_fields", "query": text, "lenient": True}}
    return _body(_bool(must=[], filter=[clause, *(filters or [])]), size)


def lucene_body(text: str, *, filters: list[dict] | None = None, size: int = SAMPLE_SIZE) -> dict:
    """Lucene syntax: the query string in `bool.must`, the pills in `bool.filter`."""
    clause = {"query_string": {"query": text, "analyze_wildcard": True, "time_zone": "UTC"}}
    return _body(_bool(must=[clause], filter=list(filters or [])), size)


def empty_body(size: int = SAMPLE_SIZE) -> dict:
    """Nothing typed: DQL's empty query gives a `match_all` in `bool.filter`."""
    return _body(_bool(must=[], filter=[{"match_all": {}}]), size)
