"""Every search mode against a real node of each engine, checked against numpy and offline fusion.

The module runs once per engine (the `engine` fixture): OpenSearch, then Elasticsearch, with the
same corpus, vectors and checks.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.backends import backend_of
from bridge.cli import main
from bridge.client import connect
from bridge.encoder import Encoder
from bridge.errors import BadInput, IndexMismatch
from bridge.indexes import IndexOptions, IndexSpec, available_analyzer, ensure_index
from bridge.search import Bm25, Hybrid, Knn, Rerank, make_searcher
from tests.ingest_helpers import datasets_dir, read_jsonl

pytestmark = pytest.mark.integration

SCIFACT = datasets_dir() / "scifact"
N_DOCS = 2500  # the k-NN recall check wants at least 2,000
N_COSINE_DOCS = 400
CANDIDATES = 100  # rerank re-scores the BM25 top 100, as `--mode rerank` does by default


@pytest.fixture(scope="module")
def client(engine):
    return engine.client


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    # Mean pooling: the tiny random model's CLS vectors are nearly identical (every dot product
    # ~32 to 1e-5), too close to rank; its mean vectors differ enough. Short passages keep it fast.
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def cosine_encoder(tiny_model_dir) -> Encoder:
    return Encoder(
        tiny_model_dir, pooling="mean", similarity="cosine", passage_max_length=64, device="cpu"
    )


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return read_jsonl(SCIFACT / "corpus.jsonl", N_DOCS)


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return [row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl", 100)]


@pytest.fixture(scope="module")
def vectors(encoder, corpus) -> dict[str, np.ndarray]:
    texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in corpus]
    return dict(zip([d["_id"] for d in corpus], encoder.encode_passages(texts), strict=True))


def _build_index(client, encoder, corpus, vectors, *, shards: int) -> Iterator[str]:
    name = f"test-search-{encoder.similarity.value}-{uuid.uuid4().hex[:8]}"
    # As ingest creates it (english analyzer where the cluster has one), filled directly.
    ensure_index(client, name, IndexSpec.of(encoder), IndexOptions(shards=shards, replicas=0))
    try:
        actions = (
            {
                "_index": name,
                "_id": d["_id"],
                "doc_id": d["_id"],
                "title": d.get("title", ""),
                "text": d["text"],
                "vector": vectors[d["_id"]].tolist(),
            }
            for d in corpus
        )
        backend_of(client).bulk(client, actions, chunk_size=500)
        client.indices.refresh(index=name)
        yield name
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def dot_index(client, encoder, corpus, vectors) -> Iterator[str]:
    yield from _build_index(client, encoder, corpus, vectors, shards=3)


@pytest.fixture(scope="module")
def cosine_index(client, cosine_encoder, corpus, vectors) -> Iterator[str]:
    # Same vectors (normalize is off): only the space type, and so the scores, differ.
    yield from _build_index(client, cosine_encoder, corpus[:N_COSINE_DOCS], vectors, shards=2)


# ---- helpers: the offline truth ----------------------------------------------------------------


def bm25_top(client, index: str, query: str, n: int) -> dict[str, float]:
    """The global BM25 top-n by a plain search with the whole index's term statistics (DFS),
    best first, ties by doc id descending."""
    body = {
        "size": n,
        "_source": False,
        "query": {
            "multi_match": {
                "query": query,
                "fields": ["title", "text"],
                "type": "best_fields",
                "tie_breaker": 0.5,
            }
        },
        "sort": ["_score", {"doc_id": "desc"}],
    }
    hits = client.search(index=index, body=body, search_type="dfs_query_then_fetch")["hits"]["hits"]
    return {h["_id"]: h["_score"] for h in hits}


def exact(query_vec: np.ndarray, doc_vecs: np.ndarray, similarity: str) -> np.ndarray:
    q = query_vec.astype(np.float64)
    m = doc_vecs.astype(np.float64)
    dots = m @ q
    if similarity == "cosine":
        dots = dots / np.linalg.norm(m, axis=1) / np.linalg.norm(q)
    return dots


def offline_ranking(ids: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    return sorted(
        zip(ids, map(float, scores), strict=True), key=lambda p: (p[1], p[0]), reverse=True
    )


def assert_ranking(hits, expected: list[tuple[str, float]]) -> None:
    """Same ids in the same order and scores within 1e-4 relative.

    Two docs whose exact scores agree to float32 resolution may swap: the engines score in float32.
    """
    truth = dict(expected)
    got = [h.doc_id for h in hits]
    assert len(got) == len(expected)
    for position, (doc_id, (want_id, want)) in enumerate(zip(got, expected, strict=True)):
        if doc_id != want_id:
            assert math.isclose(truth[doc_id], want, rel_tol=1e-6, abs_tol=1e-6), (
                f"rank {position + 1}: {doc_id} ({truth[doc_id]}) instead of {want_id} ({want})"
            )
    np.testing.assert_allclose(
        [h.score for h in hits], [truth[d] for d in got], rtol=1e-4, atol=1e-5
    )


# ---- rerank ------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["dot", "cosine"])
def test_rerank_server_and_client_equal_offline_dot_products(
    client, space, dot_index, cosine_index, encoder, cosine_encoder, vectors, queries
):
    index, enc = (dot_index, encoder) if space == "dot" else (cosine_index, cosine_encoder)
    chosen = queries[:8]
    query_vecs = enc.encode_queries(chosen)
    server = Rerank(client, index, enc, candidates=CANDIDATES, rerank_on="server")
    local = Rerank(client, index, enc, candidates=CANDIDATES, rerank_on="client")
    server_runs = server.search_many(chosen, k=CANDIDATES)
    client_runs = local.search_many(chosen, k=CANDIDATES)
    checked = 0
    for query, qvec, server_hits, client_hits in zip(
        chosen, query_vecs, server_runs, client_runs, strict=True
    ):
        top = bm25_top(client, index, query, CANDIDATES)
        ids = list(top)
        expected = offline_ranking(ids, exact(qvec, np.stack([vectors[i] for i in ids]), space))
        for hits in (server_hits, client_hits):
            # exactly the global BM25 top-N, re-ordered by the model
            assert {h.doc_id for h in hits} == set(ids)
            assert_ranking(hits, expected)
            for hit in hits:
                assert hit.bm25_score == pytest.approx(top[hit.doc_id], rel=1e-6)
                assert hit.similarity == hit.score  # rerank ranks by the similarity
                assert "vector" not in hit.source and hit.source["doc_id"] == hit.doc_id
        checked += len(ids) > 0
        # top k is the head of the same ranking
        assert [h.doc_id for h in server.search(query, k=5)] == [h.doc_id for h in server_hits[:5]]
    assert checked >= 6


def test_rerank_of_given_candidates_drops_unknown_ids(client, dot_index, encoder, vectors, queries):
    ids = list(vectors)[:40:3] + ["no-such-doc", "4983"]
    server = Rerank(client, dot_index, encoder, rerank_on="server")
    local = Rerank(client, dot_index, encoder, rerank_on="client")
    qvec = encoder.encode_queries([queries[0]])[0]
    known = [i for i in dict.fromkeys(ids) if i in vectors]
    expected = offline_ranking(known, exact(qvec, np.stack([vectors[i] for i in known]), "dot"))
    for searcher in (server, local):
        hits = searcher.rerank(queries[0], ids, k=100)
        assert_ranking(hits, expected)
        assert all(h.bm25_score is None for h in hits)  # given candidates: no BM25 score
    many = server.rerank_many(queries[:3], [ids, [], ["no-such-doc"]], k=5)
    assert [h.doc_id for h in many[0]] == [d for d, _ in expected[:5]]
    assert many[1] == [] and many[2] == []


# ---- k-NN --------------------------------------------------------------------------------------


def test_knn_recall_and_scores_match_brute_force(client, dot_index, encoder, vectors, queries):
    ids = list(vectors)
    matrix = np.stack([vectors[i] for i in ids])
    knn = Knn(client, dot_index, encoder, ef_search=100)
    runs = knn.search_many(queries, k=10)
    recalls = []
    for qvec, hits in zip(encoder.encode_queries(queries), runs, strict=True):
        scores = exact(qvec, matrix, "dot")
        truth = {ids[i] for i in np.argsort(-scores, kind="stable")[:10]}
        recalls.append(len(truth & {h.doc_id for h in hits}) / 10)
        by_id = dict(zip(ids, scores, strict=True))
        np.testing.assert_allclose(
            [h.score for h in hits], [by_id[h.doc_id] for h in hits], rtol=1e-4
        )
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(ids) >= 2000 and len(queries) >= 100
    assert np.mean(recalls) >= 0.95, f"recall@10 {np.mean(recalls):.3f}"


def test_knn_cosine_scores_are_cosines(client, cosine_index, cosine_encoder, vectors, queries):
    knn = Knn(client, cosine_index, cosine_encoder)
    for query, qvec in zip(queries[:5], cosine_encoder.encode_queries(queries[:5]), strict=True):
        hits = knn.search(query, k=10)
        assert len(hits) == 10
        matrix = np.stack([vectors[h.doc_id] for h in hits])
        np.testing.assert_allclose(
            [h.score for h in hits], exact(qvec, matrix, "cosine"), rtol=1e-4, atol=1e-6
        )


def test_knn_filter_is_applied(client, dot_index, encoder, vectors, queries):
    allowed = list(vectors)[:30]
    knn = Knn(client, dot_index, encoder, filter={"terms": {"doc_id": allowed}})
    hits = knn.search(queries[0], k=10)
    assert len(hits) == 10 and {h.doc_id for h in hits} <= set(allowed)


# ---- hybrid ------------------------------------------------------------------------------------


def test_hybrid_rrf_equals_offline_rrf(client, dot_index, encoder, queries):
    bm25, knn = Bm25(client, dot_index), Knn(client, dot_index, encoder)
    hybrid = Hybrid(bm25, knn, depth=30, rrf_k=60)
    fused_runs = hybrid.search_many(queries[:5], k=20)
    for query, fused in zip(queries[:5], fused_runs, strict=True):
        scores: dict[str, float] = {}
        for run in (bm25.search(query, k=30), knn.search(query, k=30)):
            for rank, hit in enumerate(run, start=1):
                scores[hit.doc_id] = scores.get(hit.doc_id, 0.0) + 1 / (60 + rank)
        expected = sorted(scores.items(), key=lambda p: (p[1], p[0]), reverse=True)[:20]
        assert [h.doc_id for h in fused] == [d for d, _ in expected]
        assert [h.score for h in fused] == pytest.approx([v for _, v in expected], rel=1e-12)
        assert all(h.source["doc_id"] == h.doc_id for h in fused)


def test_without_source_the_same_hits_come_back_bare(client, dot_index, encoder, queries):
    options = [("bm25", {}), ("knn", {}), ("hybrid", {})]
    options += [("rerank", {"rerank_on": "server"}), ("rerank", {"rerank_on": "client"})]
    for mode, extra in options:
        full = make_searcher(mode, client, dot_index, encoder, **extra).search(queries[2], k=7)
        bare = make_searcher(mode, client, dot_index, encoder, source=False, **extra)
        hits = bare.search(queries[2], k=7)
        assert [(h.doc_id, h.score) for h in hits] == [(h.doc_id, h.score) for h in full], mode
        assert all(h.source == {} for h in hits), mode
    rerank = Rerank(client, dot_index, encoder, rerank_on="client", source=False)
    assert all(h.source == {} for h in rerank.rerank(queries[2], ["4983", "5836"], k=2))


# ---- user input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_searchers(client, dot_index, encoder) -> dict[str, object]:
    return {
        "bm25": make_searcher("bm25", client, dot_index),
        "rerank-server": make_searcher("rerank", client, dot_index, encoder, candidates=20),
        "rerank-client": make_searcher("rerank", client, dot_index, encoder, rerank_on="client"),
        "knn": make_searcher("knn", client, dot_index, encoder),
        "hybrid": make_searcher("hybrid", client, dot_index, encoder, depth=20),
        "hybrid-linear": make_searcher("hybrid", client, dot_index, encoder, fusion="linear"),
    }


TRICKY = [
    "AND", "OR", "NOT", "*", "?", "\\", '"', "'", "(", ")", "[", "]", "{", "}", ":", "^", "~",
    "/", "&&", "||", "!", "+", "-", "<", ">", "=", "#", "😀", "🧬", "👩‍🔬", "\x00", "\t", "𝔘",
]  # fmt: skip

user_queries = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(TRICKY)), max_size=12).map(" ".join),
)


@settings(max_examples=40, deadline=None)
@given(query=user_queries)
def test_any_user_text_searches_in_every_mode(all_searchers, query):
    for name, searcher in all_searchers.items():
        if not query.strip():
            with pytest.raises(BadInput):
                searcher.search(query, k=3)
            continue
        hits = searcher.search(query, k=3)
        assert len(hits) <= 3, name


def test_ten_thousand_characters_of_distinct_words(all_searchers, corpus):
    words = list(dict.fromkeys(w for d in corpus for w in d["text"].split()))
    query = " ".join(words)[:10_000]
    assert len(query) == 10_000 and len(query.split()) > 1000
    for name, searcher in all_searchers.items():
        hits = searcher.search(query, k=5)
        assert len(hits) == 5, name


@pytest.mark.parametrize("query", ["", "   ", "\n"])
def test_empty_query_is_bad_input_in_every_mode(all_searchers, query):
    for searcher in all_searchers.values():
        with pytest.raises(BadInput, match="empty"):
            searcher.search(query)


# ---- index checks ------------------------------------------------------------------------------


def test_encoder_that_does_not_fit_the_index_is_a_mismatch(
    client, dot_index, tiny_encoder, minilm_dir
):
    with pytest.raises(IndexMismatch, match="pooling mean .index. vs cls .encoder."):
        Knn(client, dot_index, tiny_encoder)
    other = Encoder(minilm_dir, device="cpu")
    for mode in ("rerank", "knn", "hybrid"):
        with pytest.raises(IndexMismatch) as err:
            make_searcher(mode, client, dot_index, other)
        assert "dimension 32 (index) vs 384 (encoder)" in err.value.message
        assert "model" in err.value.message


def test_missing_index_tells_to_ingest(client, encoder):
    name = f"test-search-missing-{uuid.uuid4().hex[:8]}"
    for mode in ("bm25", "rerank", "knn", "hybrid"):
        with pytest.raises(BadInput, match="dotbridge ingest"):
            make_searcher(mode, client, name, encoder)


# ---- CLI ---------------------------------------------------------------------------------------


def test_cli_search_table_and_json(engine, client, dot_index, encoder, queries):
    env = engine.env
    runner = CliRunner()
    query = queries[1]
    model = ["--model", encoder.model_id, "--pooling", "mean", "--device", "cpu"]
    for mode, searcher in (
        ("bm25", Bm25(client, dot_index)),
        ("knn", Knn(client, dot_index, encoder)),
        ("rerank", Rerank(client, dot_index, encoder)),
    ):
        expected = [h.doc_id for h in searcher.search(query, k=5)]
        assert len(expected) == 5
        args = ["search", query, "--index", dot_index, "--mode", mode, "-k", "5", *model]
        table = runner.invoke(main, args, env=env)
        assert table.exit_code == 0, table.output
        rows = table.output.splitlines()[1:]
        assert [row.split()[1] for row in rows] == expected
        assert [row.split()[0] for row in rows] == ["1", "2", "3", "4", "5"]
        as_json = runner.invoke(main, [*args, "--json"], env=env)
        assert as_json.exit_code == 0, as_json.output
        records = [json.loads(line) for line in as_json.output.splitlines()]
        assert [r["doc_id"] for r in records] == expected
        assert [r["rank"] for r in records] == [1, 2, 3, 4, 5]
        assert all("vector" not in r["source"] for r in records)


def test_cli_reports_bad_input(engine, dot_index):
    env = engine.env
    runner = CliRunner()
    result = runner.invoke(main, ["search", "  ", "--index", dot_index, "--mode", "knn"], env=env)
    assert result.exit_code == 1
    assert "The query is empty" in result.output
    missing = f"test-search-missing-{uuid.uuid4().hex[:8]}"
    result = runner.invoke(main, ["search", "cells", "--index", missing, "--mode", "bm25"], env=env)
    assert result.exit_code == 1
    assert "dotbridge ingest" in result.output


def one_sentence(output: str) -> str:
    """The CLI's error line, checked to be one sentence (no traceback, no second sentence)."""
    (line,) = output.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith("."), line
    assert "Traceback" not in output and line.count(". ") == 0, line
    return line


def test_cli_errors_are_one_sentence_each(engine, dot_index, minilm_dir):
    runner = CliRunner()
    missing = f"test-search-missing-{uuid.uuid4().hex[:8]}"
    args = ["search", "cells", "--mode", "knn", "--device", "cpu"]
    line = one_sentence(runner.invoke(main, [*args, "--index", missing], env=engine.env).output)
    assert f"Index {missing!r} does not exist" in line
    # A model other than the index's: named, with the way out.
    other = runner.invoke(
        main, [*args, "--index", dot_index, "--model", str(minilm_dir)], env=engine.env
    )
    assert other.exit_code == 1
    line = one_sentence(other.output)
    assert f"Index {dot_index!r} was built by" in line and "dimension 32 (index) vs 384" in line
    # A --backend that is not the cluster's engine.
    wrong = "opensearch" if engine.name == "elasticsearch" else "elasticsearch"
    refused = runner.invoke(main, [*args, "--index", dot_index, "--backend", wrong], env=engine.env)
    assert refused.exit_code == 1
    line = one_sentence(refused.output)
    assert f"--backend {wrong} (DOTBRIDGE_BACKEND), but {engine.settings.url} is" in line
    assert f"pass --backend {engine.name}, or auto." in line


# ---- shards, scores and the product's own semantics ----------------------------------------------


@pytest.fixture(scope="module")
def single_shard_index(client, encoder, corpus, vectors) -> Iterator[str]:
    yield from _build_index(client, encoder, corpus, vectors, shards=1)


def test_one_and_three_shards_give_the_same_bm25_top_100_and_rerank(
    client, dot_index, single_shard_index, encoder, queries
):
    # BM25 with each shard's own term statistics would rank differently on 3 shards.
    for query in queries[:12]:
        one = Bm25(client, single_shard_index).search(query, k=100)
        three = Bm25(client, dot_index).search(query, k=100)
        assert [h.doc_id for h in three] == [h.doc_id for h in one]
        np.testing.assert_allclose([h.score for h in three], [h.score for h in one], rtol=1e-6)
        for side in ("server", "client"):
            single = Rerank(client, single_shard_index, encoder, rerank_on=side).search(query, k=20)
            sharded = Rerank(client, dot_index, encoder, rerank_on=side).search(query, k=20)
            assert [h.doc_id for h in sharded] == [h.doc_id for h in single]


def test_searchers_reject_empty_queries_and_bad_k(client, dot_index):
    searcher = Bm25(client, dot_index)
    with pytest.raises(BadInput, match="empty"):
        searcher.search("  ")
    with pytest.raises(BadInput, match="Query 2 of 2"):
        searcher.search_many(["ok", ""])
    with pytest.raises(ValueError, match="k must be"):
        searcher.search("ok", k=0)
    with pytest.raises(TypeError):
        searcher.search_many("not a list")


def test_many_queries_in_one_call_equal_one_at_a_time(client, dot_index, encoder, queries):
    # search_many splits its _msearch requests; the split must not change any result.
    batched = Bm25(client, dot_index, source=False).search_many(queries, k=50)
    for query, hits in zip(queries[::9], batched[::9], strict=True):
        alone = Bm25(client, dot_index, source=False).search(query, k=50)
        assert [(h.doc_id, h.score) for h in hits] == [(h.doc_id, h.score) for h in alone]
    deep = Knn(client, dot_index, encoder, source=False).search_many(queries[:30], k=1000)
    assert [len(hits) for hits in deep] == [1000] * 30


def test_a_long_query_with_few_distinct_tokens_is_searched_as_typed(client, dot_index):
    query = " ".join(["cell"] * 100)  # longer than RAW_QUERY_MAX_CHARS, few tokens
    hits = Bm25(client, dot_index, source=False).search(query, k=10)
    body = {"size": 10, "query": mappings_free_match(query), "sort": ["_score", {"doc_id": "desc"}]}
    plain = client.search(index=dot_index, body=body, search_type="dfs_query_then_fetch")
    assert [(h.doc_id, h.score) for h in hits] == [
        (h["_id"], h["_score"]) for h in plain["hits"]["hits"]
    ]


def mappings_free_match(text: str) -> dict:
    return {
        "multi_match": {
            "query": text,
            "fields": ["title", "text"],
            "type": "best_fields",
            "tie_breaker": 0.5,
        }
    }


def test_negative_and_positive_dot_products_come_back_exact(engine, client, engine_index):
    """Through the real node: the k-NN query and exact scoring (OpenSearch's knn_score script,
    Elasticsearch's filtered knn query) report inner products in the engine's convention, and
    to_similarity turns both back into the dot product."""
    from bridge.search import exact_score_body, knn_body, to_similarity

    rng = np.random.default_rng(11)
    docs = rng.normal(size=(60, 16)).astype(np.float32) * 3
    query = rng.normal(size=16).astype(np.float32)
    dots = docs.astype(np.float64) @ query.astype(np.float64)
    assert (dots < -1).sum() > 10 and (dots > 1).sum() > 10  # both branches of the convention
    backend = engine.backend
    analyzer = available_analyzer(client, "english")
    body = backend.index_body(dimension=16, similarity="dot", meta={}, analyzer=analyzer)
    client.indices.create(index=engine_index, body=body)
    backend.bulk(
        client,
        (
            {"_index": engine_index, "_id": f"d{i}", "doc_id": f"d{i}", "text": "x", "vector": v}
            for i, v in enumerate(docs.tolist())
        ),
        refresh=True,
    )
    truth = {f"d{i}": d for i, d in enumerate(dots)}
    for request in (
        knn_body(query, 60, backend=backend),
        exact_score_body(query, list(truth), 60, similarity="dot", backend=backend),
    ):
        hits = client.search(index=engine_index, body=request)["hits"]["hits"]
        assert len(hits) == 60
        got = [to_similarity(h["_score"], "dot", backend) for h in hits]
        np.testing.assert_allclose(got, [truth[h["_id"]] for h in hits], rtol=1e-5, atol=1e-5)
        assert got == sorted(got, reverse=True)


def test_the_seed_semantics_cls_vector_raw_dot_product(engine, client, minilm_dir, corpus, queries):
    """The product's default: CLS pooling, no normalisation, raw dot product, innerproduct space
    (OpenSearch) or max_inner_product (Elasticsearch), here on MiniLM's weights (the seed itself
    cannot be downloaded). k-NN and re-ranking on the server equal numpy dot products of the CLS
    vectors."""
    seed_like = Encoder(
        minilm_dir, pooling="cls", normalize=False, passage_max_length=64, device="cpu"
    )
    assert (seed_like.pooling, seed_like.normalize, seed_like.similarity.value) == (
        "cls",
        False,
        "dot",
    )
    docs = corpus[:300]
    texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in docs]
    vecs = dict(zip([d["_id"] for d in docs], seed_like.encode_passages(texts), strict=True))
    building = _build_index(client, seed_like, docs, vecs, shards=2)
    index = next(building)  # deleted when `building` is closed
    try:
        field = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["vector"]
        if engine.name == "opensearch":
            assert field["space_type"] == "innerproduct"
        else:
            assert (field["type"], field["similarity"]) == ("dense_vector", "max_inner_product")
            assert field["index_options"]["type"] == "hnsw"  # float32 vectors, no quantisation
        ids = list(vecs)
        matrix = np.stack([vecs[i] for i in ids])
        for query, qvec in zip(queries[:5], seed_like.encode_queries(queries[:5]), strict=True):
            expected = offline_ranking(ids, exact(qvec, matrix, "dot"))
            assert_ranking(
                Knn(client, index, seed_like, ef_search=300).search(query, 10), expected[:10]
            )
            top = bm25_top(client, index, query, 50)
            want = offline_ranking(list(top), exact(qvec, np.stack([vecs[i] for i in top]), "dot"))
            assert_ranking(Rerank(client, index, seed_like, candidates=50).search(query, 50), want)
    finally:
        building.close()


def test_a_search_that_fails_on_some_shards_raises_instead_of_returning_part(
    engine, client, dot_index, engine_index, encoder, queries
):
    from bridge.search import knn_body
    from bridge.search.transport import SearchFailed, msearch

    # A second index whose `vector` is no vector field: the k-NN query fails on its shard only.
    client.indices.create(
        index=engine_index,
        body={
            "settings": {"index": {"number_of_shards": 1}},
            "mappings": {"properties": {"vector": {"type": "keyword"}}},
        },
    )
    client.index(index=engine_index, id="x", body={"vector": "not a vector"}, refresh=True)
    body = knn_body(encoder.encode_queries([queries[0]])[0], 10, backend=engine.backend)
    raw = client.search(index=f"{dot_index},{engine_index}", body=body)
    assert raw["_shards"]["failed"] >= 1 and raw["hits"]["hits"]  # the engine returns a part
    with pytest.raises(SearchFailed, match=r"failed on 1 of 4 shards"):
        msearch(client, f"{dot_index},{engine_index}", [body])


def test_hybrid_sends_both_sides_in_one_msearch_after_one_encode(
    engine, dot_index, encoder, queries, monkeypatch
):
    client = connect(engine.settings)  # a real client of its own, its calls counted
    calls: list[int] = []
    real_msearch = client.msearch

    def counted(body, **kwargs):
        calls.append(len(body) // 2)
        return real_msearch(body=body, **kwargs)

    monkeypatch.setattr(client, "msearch", counted)
    encodes: list[int] = []
    real_encode = encoder.encode_queries
    monkeypatch.setattr(
        encoder, "encode_queries", lambda q: encodes.append(len(q)) or real_encode(q)
    )
    hybrid = make_searcher("hybrid", client, dot_index, encoder, depth=50)
    one = hybrid.search(queries[0], k=10)
    assert calls == [2] and encodes == [1]  # one request carrying BM25 and k-NN, one encode
    calls.clear()
    hybrid.search_many(queries[:20], k=10)
    assert calls == [40]
    # Two clients: the two sides go separately, and fuse to the same list.
    other = connect(engine.settings)
    separate = Hybrid(Bm25(other, dot_index), Knn(client, dot_index, encoder), depth=50)
    apart = separate.search(queries[0], k=10)
    assert [(h.doc_id, h.score) for h in one] == [(h.doc_id, h.score) for h in apart]
    # The one-request path fetches only the fused hits' documents, afterwards (a multi-get):
    # the same documents each side's own search returned, without the vector.
    assert [h.source for h in one] == [h.source for h in apart]
    assert all(h.source["doc_id"] == h.doc_id and "vector" not in h.source for h in one)


@pytest.mark.parametrize("query", ["cell \ud83d growth", "cell \ud83d\ude00 growth", "\udcff"])
def test_a_query_that_is_not_valid_unicode_searches_in_every_mode(all_searchers, encoder, query):
    # A lone surrogate half (a `\ud83d` escape) counts as U+FFFD, a pair as its character.
    repaired = query.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    np.testing.assert_array_equal(
        encoder.encode_queries([query]), encoder.encode_queries([repaired])
    )
    for name, searcher in all_searchers.items():
        hits = searcher.search(query, k=3)
        # A query of nothing but U+FFFD has no term for BM25 to match, so BM25 and re-ranking
        # (which re-scores BM25's candidates) find nothing; k-NN and hybrid still rank.
        no_terms = "growth" not in query and name.startswith(("bm25", "rerank"))
        assert len(hits) == (0 if no_terms else 3), name


def test_bm25_searches_an_index_that_dotbridge_did_not_make(engine, client, engine_index):
    """An index with title and text but no doc_id field (made by someone else): BM25 answers,
    equal scores simply without the doc-id tie-break, instead of a sort error."""
    fields = {"title": {"type": "text"}, "text": {"type": "text"}}
    client.indices.create(index=engine_index, body={"mappings": {"properties": fields}})
    docs = {"a": "vitamin d and bone", "b": "sleep and fatigue", "c": "vitamin d deficiency"}
    for doc_id, text in docs.items():
        client.index(index=engine_index, id=doc_id, body={"title": "", "text": text})
    client.indices.refresh(index=engine_index)
    result = CliRunner().invoke(
        main,
        ["search", "vitamin d", "--index", engine_index, "--mode", "bm25", "--json"],
        env=engine.env,
    )
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["doc_id"] for line in result.output.splitlines()]
    assert sorted(ids) == ["a", "c"]
