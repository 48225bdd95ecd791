"""Discover on an index pattern WITH a time field, at the request level (a real OpenSearch node
through a real gateway): the typed text selects by the model, the caller's time sort orders
the selection, each row keeps the mode's score, the histogram comes back; sorting by `_score`
gives the mode's order (references from the searchers computed in the same test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bridge.backends import backend_of
from bridge.client import connect
from bridge.encoder import Encoder
from bridge.gateway.aliases import mode_aliases
from bridge.gateway.fieldsort import field_sort
from bridge.indexes import IndexOptions, IndexSpec, ensure_index
from bridge.search import make_searcher
from tests import discover_bodies
from tests.gateway_fixtures import SCIFACT, answer, read_jsonl, request

TEXT = "vitamin d deficiency and bone health"
N_DOCS = 300
SIZE = 40
TIME_SORT = [{"ts": {"order": "desc", "unmapped_type": "boolean"}}]


def test_which_sorts_are_field_sorts():
    assert field_sort({"sort": TIME_SORT}) == TIME_SORT
    assert field_sort({"sort": "ts"}) == ["ts"]
    assert field_sort({"sort": [{"_score": {"order": "desc"}}, {"ts": "desc"}]}) is None
    assert field_sort({"sort": ["_score"]}) is None
    assert field_sort({"sort": []}) is None
    assert field_sort({}) is None


def day(i: int) -> str:
    return f"2024-{1 + i % 12:02d}-{1 + (i * 7) % 28:02d}T{i % 24:02d}:00:00Z"


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def client(opensearch_settings):
    return connect(opensearch_settings)


@pytest.fixture(scope="module")
def index(client, encoder) -> Iterator[str]:
    """SciFact's first documents with a `ts` date field, and the per-mode aliases."""
    name = f"test-timefield-{uuid.uuid4().hex[:8]}"
    corpus = read_jsonl(SCIFACT / "corpus.jsonl", N_DOCS)
    vectors = encoder.encode_passages([f"{d['title']} {d['text']}" for d in corpus])
    ensure_index(client, name, IndexSpec.of(encoder), IndexOptions(shards=2))
    client.indices.put_mapping(index=name, body={"properties": {"ts": {"type": "date"}}})
    try:
        actions = (
            {"_index": name, "_id": d["_id"], "title": d["title"], "text": d["text"]}
            | {"ts": day(i), "vector": v.tolist()}
            for i, (d, v) in enumerate(zip(corpus, vectors, strict=True))
        )
        backend_of(client).bulk(client, actions)
        client.indices.refresh(index=name)
        mode_aliases(client, name)
        yield name
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


def time_body(text: str, sort: list, gte: str = "2000-01-01T00:00:00Z") -> dict:
    """What Discover sends on a pattern with a time field (see the shared DASHBOARDS notes)."""
    time_range = {
        "range": {
            "ts": {"gte": gte, "lte": "2030-01-01T00:00:00Z", "format": "strict_date_optional_time"}
        }
    }
    body = discover_bodies.dql_body(text, filters=[time_range], size=SIZE)
    body["sort"] = sort
    body["docvalue_fields"] = [{"field": "ts", "format": "date_time"}]
    body["aggs"] = {
        "2": {"date_histogram": {"field": "ts", "calendar_interval": "1M", "min_doc_count": 1}}
    }
    return body


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["knn", "hybrid", "bm25", "rerank"])
def test_time_sorted_discover_selects_by_the_model(gateway_url, client, encoder, index, mode):
    expected = make_searcher(mode, client, index, encoder).search(TEXT, SIZE)
    scores = {h.doc_id: h.score for h in expected}
    path = f"/{index}.{mode}/_search{discover_bodies.PARAMS}"

    got = answer(request(gateway_url, "POST", path, time_body(TEXT, TIME_SORT)))
    hits = got["hits"]["hits"]
    assert {h["_id"] for h in hits} == set(scores)  # selected by the model
    stamps = [h["_source"]["ts"] for h in hits]
    assert stamps == sorted(stamps, reverse=True)  # ordered by the caller's sort
    assert [h["_score"] for h in hits] == pytest.approx([scores[h["_id"]] for h in hits], abs=1e-4)
    assert all("vector" not in h["_source"] for h in hits)
    buckets = got["aggregations"]["2"]["buckets"]
    assert buckets and sum(b["doc_count"] for b in buckets) >= 1

    by_score = time_body(TEXT, [{"_score": {"order": "desc"}}])
    ranked = answer(request(gateway_url, "POST", path, by_score))["hits"]["hits"]
    assert [h["_id"] for h in ranked] == [h.doc_id for h in expected]


@pytest.mark.integration
def test_the_time_range_restricts_the_selection(gateway_url, client, encoder, index):
    gte = "2024-07-01T00:00:00Z"
    restriction = {
        "bool": {"filter": [{"range": {"ts": {"gte": gte, "lte": "2030-01-01T00:00:00Z"}}}]}
    }
    expected = make_searcher("knn", client, index, encoder, filter=restriction).search(TEXT, SIZE)
    path = f"/{index}.knn/_search{discover_bodies.PARAMS}"
    hits = answer(request(gateway_url, "POST", path, time_body(TEXT, TIME_SORT, gte)))["hits"][
        "hits"
    ]
    assert {h["_id"] for h in hits} == {h.doc_id for h in expected}
    assert all(h["_source"]["ts"] >= gte for h in hits)
    # nothing typed: Discover's own time-sorted view, as the cluster answers it
    empty = time_body("x", TIME_SORT, gte)
    empty["query"]["bool"]["filter"][0] = {"match_all": {}}
    through = answer(request(gateway_url, "POST", path, empty))["hits"]["hits"]
    direct = client.search(index=f"{index}.knn", body=empty)["hits"]["hits"]
    assert [h["_id"] for h in through] == [h["_id"] for h in direct] and len(through) == SIZE
