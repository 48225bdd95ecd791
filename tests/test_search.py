"""Search without a server: request bodies, fusion, score conversion, long-query handling."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from bridge.errors import BadInput
from bridge.search import (
    Hit,
    Hybrid,
    Rerank,
    bm25_body,
    cap_terms,
    check_query,
    exact_score_body,
    ids_body,
    knn_body,
    linear,
    make_searcher,
    rrf,
    similarities,
    source_filter,
    to_similarity,
)

# ---- score conversion --------------------------------------------------------------------------


def test_to_similarity_rejects_unknown_similarity():
    with pytest.raises(ValueError, match="dot, cosine"):
        to_similarity(1.0, "l2")


def test_similarities_match_numpy():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5, 4)).astype(np.float32)
    query = rng.normal(size=4).astype(np.float32)
    m64, q64 = matrix.astype(np.float64), query.astype(np.float64)
    np.testing.assert_allclose(similarities(query, matrix, "dot"), m64 @ q64, rtol=1e-12)
    cos = m64 @ q64 / np.linalg.norm(m64, axis=1) / np.linalg.norm(q64)
    np.testing.assert_allclose(similarities(query, matrix, "cosine"), cos, rtol=1e-12)


# ---- fusion ------------------------------------------------------------------------------------


def test_rrf_sums_reciprocal_ranks():
    fused = dict(rrf([["a", "b", "c"], ["c", "a", "d"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["d"] == pytest.approx(1 / 63)


def test_rrf_orders_best_first_and_ties_by_id_descending_as_trec_eval():
    fused = rrf([["x", "b"], ["a", "y"]], k=1)
    assert [doc for doc, _ in fused] == ["x", "a", "y", "b"]
    assert rrf([]) == []


def test_rrf_counts_a_repeated_doc_once_per_run():
    assert dict(rrf([["a", "a", "b"]], k=0)) == {"a": 1.0, "b": 0.5}


def test_linear_normalises_each_list_and_counts_missing_as_zero():
    sparse = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    dense = [("b", 0.9), ("d", 0.5)]
    fused = dict(linear(sparse, dense, weight=0.25))
    assert fused["a"] == pytest.approx(0.75 * 1.0)
    assert fused["b"] == pytest.approx(0.75 * 0.5 + 0.25 * 1.0)
    assert fused["c"] == pytest.approx(0.0)
    assert fused["d"] == pytest.approx(0.0)
    assert [doc for doc, _ in linear(sparse, dense, weight=0.25)][:2] == ["a", "b"]


def test_linear_with_equal_scores_and_extreme_weights():
    assert dict(linear([("a", 3.0), ("b", 3.0)], [], weight=0.0)) == {"a": 1.0, "b": 1.0}
    assert linear([("a", 1.0)], [("b", 2.0), ("c", 1.0)], weight=1.0)[0] == ("b", 1.0)
    with pytest.raises(ValueError, match="weight"):
        linear([], [], weight=1.5)


class FakeSearcher:
    def __init__(self, ranking: Sequence[tuple[str, float]]):
        self.ranking = ranking
        self.asked: list[int] = []

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        self.asked.append(k)
        return [[Hit(d, v, {"doc_id": d}) for d, v in self.ranking[:k]] for _ in queries]


def test_hybrid_fuses_both_runs():
    sparse = FakeSearcher([("a", 9.0), ("b", 8.0), ("c", 7.0)])
    dense = FakeSearcher([("c", 0.9), ("d", 0.8)])
    hybrid = Hybrid(sparse, dense, depth=3)
    hits = hybrid.search("q", k=2)
    assert sparse.asked == [3] and dense.asked == [3]
    assert [h.doc_id for h in hits] == ["c", "a"]
    assert hits[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert (hits[0].bm25_score, hits[0].similarity) == (7.0, 0.9)  # the parts it was fused from
    assert (hits[1].bm25_score, hits[1].similarity) == (9.0, None)
    assert hits[0].source == {"doc_id": "c"}
    linear_hits = Hybrid(sparse, dense, fusion="linear", weight=0.5).search("q", k=4)
    assert [h.doc_id for h in linear_hits] == ["c", "a", "b", "d"]  # a and c tie at 0.5


def test_hybrid_asks_for_at_least_k():
    sparse, dense = FakeSearcher([]), FakeSearcher([])
    Hybrid(sparse, dense, depth=5).search_many(["q"], k=20)
    assert sparse.asked == [20]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fusion": "max"}, "rrf, linear"),
        ({"weight": -0.1}, "weight"),
        ({"depth": 0}, "depth"),
        ({"rrf_k": -1}, "rrf_k"),
    ],
)
def test_hybrid_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Hybrid(FakeSearcher([]), FakeSearcher([]), **options)


def test_make_searcher_rejects_unknown_mode_and_missing_encoder():
    with pytest.raises(ValueError, match="bm25, rerank, knn, hybrid"):
        make_searcher("dense", None, "idx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an encoder"):
        make_searcher("knn", None, "idx")  # type: ignore[arg-type]


def test_rerank_rejects_unknown_side():
    with pytest.raises(ValueError, match="server, client"):
        Rerank(None, "idx", None, rerank_on="gpu")  # type: ignore[arg-type]


# ---- request bodies ----------------------------------------------------------------------------


def test_bm25_body_is_a_multi_match_without_query_syntax():
    body = bm25_body('title:"x" AND (y OR z*) \\', 7)
    assert body["size"] == 7
    match = body["query"]["multi_match"]
    assert match["query"] == 'title:"x" AND (y OR z*) \\'
    assert match["fields"] == ["title", "text"]
    assert "analyzer" not in match
    assert body["sort"][0] == {"_score": {"order": "desc"}}
    assert body["sort"][1] == {"doc_id": {"order": "desc", "unmapped_type": "keyword"}}
    assert body["_source"] == {"excludes": ["vector"]}
    assert "query_string" not in json.dumps(body)


def test_bm25_body_sources_analyzer_and_filter():
    assert bm25_body("q", 3, source=False)["_source"] is False
    assert bm25_body("q", 3, with_vector=True)["_source"] is True
    body = bm25_body("a b", 3, analyzer="whitespace", filter={"term": {"doc_id": "1"}})
    query = body["query"]["bool"]
    assert query["must"][0]["multi_match"]["analyzer"] == "whitespace"
    assert query["filter"] == [{"term": {"doc_id": "1"}}]


def test_knn_body():
    vector = np.array([0.5, -1.25], dtype=np.float32)
    body = knn_body(vector, 5)
    assert body["size"] == 5
    assert body["query"] == {"knn": {"vector": {"vector": [0.5, -1.25], "k": 5}}}
    assert body["_source"] == {"excludes": ["vector"]}
    body = knn_body([1.0, 2.0], 3, ef_search=64, filter={"term": {"doc_id": "x"}})
    knn = body["query"]["knn"]["vector"]
    assert knn["method_parameters"] == {"ef_search": 64}
    assert knn["filter"] == {"term": {"doc_id": "x"}}
    json.dumps(body)  # plain JSON types only


@pytest.mark.parametrize(
    ("similarity", "space"), [("dot", "innerproduct"), ("cosine", "cosinesimil")]
)
def test_exact_score_body_scores_exactly_the_given_ids(similarity, space):
    body = exact_score_body(np.ones(3, dtype=np.float32), ["d1", "d2"], 2, similarity=similarity)
    script_score = body["query"]["script_score"]
    assert script_score["query"] == {"ids": {"values": ["d1", "d2"]}}
    assert script_score["script"] == {
        "source": "knn_score",
        "lang": "knn",
        "params": {"field": "vector", "query_value": [1.0, 1.0, 1.0], "space_type": space},
    }
    assert body["size"] == 2
    assert "rescore" not in body
    assert body["_source"] == {"excludes": ["vector"]}


def test_source_filter_never_returns_the_vector_unless_asked():
    assert source_filter(True) == {"excludes": ["vector"]}
    assert source_filter(False) is False
    assert source_filter(True, with_vector=True) is True
    assert source_filter(False, with_vector=True, vector_field="v") == {"includes": ["v"]}
    assert knn_body([1.0], 2, source=False)["_source"] is False
    assert exact_score_body([1.0], ["a"], 1, similarity="dot", source=False)["_source"] is False
    assert ids_body(["a", "b"], source=False) == {
        "size": 2,
        "query": {"ids": {"values": ["a", "b"]}},
        "_source": {"includes": ["vector"]},
    }


# ---- queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", " ", "\n\t ", "\u3000"])
def test_empty_query_is_bad_input(query):
    with pytest.raises(BadInput, match="empty"):
        check_query(query)


def test_check_query_keeps_the_query():
    assert check_query(" a (b) ") == " a (b) "


def test_cap_terms_keeps_short_queries_and_dedupes_long_ones():
    assert cap_terms(["a", "b", "a"], limit=3) == ["a", "b", "a"]
    assert cap_terms(["a", "b", "a", "c", "b", "d"], limit=3) == ["a", "b", "c"]
