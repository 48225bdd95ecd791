"""Compressed indexes on a real node of each engine: what each engine builds or refuses, and
exact final scores in every mode, checked against numpy.

Documents are 2,000 random unit vectors of MiniLM's 384 dimensions (bbq needs at least 64);
queries are real SciFact queries encoded by the packaged MiniLM. Each compression level the
engine builds gets one index; scores of the exact path, k-NN and hybrid must equal numpy's dot
products to 1e-5, and k-NN's ranking must equal the exact ranking of the candidates the
compressed graph found.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner

from bridge.backends import backend_of
from bridge.cli import main
from bridge.encoder import Encoder
from bridge.errors import BadInput
from bridge.indexes import IndexOptions, IndexSpec, ensure_index, read_mappings, read_spec
from bridge.search import Hybrid, Knn, Rerank, make_searcher
from bridge.search.transport import msearch
from mappings import VECTOR_FIELD
from tests.ingest_helpers import datasets_dir, read_jsonl

pytestmark = pytest.mark.integration

N_DOCS = 2000
N_QUERIES = 20
K = 10
OVERSAMPLE = 5
BUILT = {"opensearch": ("none", "4x"), "elasticsearch": ("none", "4x", "8x", "32x")}
LEVELS = ("none", "4x", "8x", "32x")


@pytest.fixture(scope="module")
def client(engine):
    return engine.client


@pytest.fixture(scope="module")
def encoder(minilm_dir) -> Encoder:
    return Encoder(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((N_DOCS, 384)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return [f"d{i}" for i in range(N_DOCS)], matrix


@pytest.fixture(scope="module")
def queries(encoder) -> tuple[list[str], np.ndarray]:
    texts = [r["text"] for r in read_jsonl(datasets_dir() / "scifact" / "queries.jsonl", 20)]
    return texts, encoder.encode_queries(texts)


@pytest.fixture(scope="module")
def indexes(engine, client, encoder, corpus) -> Iterator[dict[str, str]]:
    """One filled index per compression level the engine builds."""
    ids, matrix = corpus
    made = {}
    try:
        for level in BUILT[engine.name]:
            name = f"test-compress-{level}-{uuid.uuid4().hex[:8]}"
            ensure_index(client, name, IndexSpec.of(encoder), IndexOptions(compression=level))
            made[level] = name
            actions = (
                {
                    "_index": name,
                    "_id": doc_id,
                    "doc_id": doc_id,
                    "title": "",
                    "text": f"document {doc_id}",
                    VECTOR_FIELD: vec.tolist(),
                }
                for doc_id, vec in zip(ids, matrix, strict=True)
            )
            backend_of(client).bulk(client, actions, chunk_size=500)
            client.indices.refresh(index=name)
            # One segment: a background merge between two searches would change the graph
            # they walk, and with it the candidates a test compares.
            client.indices.forcemerge(index=name, max_num_segments=1)
            client.indices.refresh(index=name)
        yield made
    finally:
        for name in made.values():
            client.indices.delete(index=name, ignore_unavailable=True)


def truth(corpus, qvec: np.ndarray) -> dict[str, float]:
    ids, matrix = corpus
    scores = (matrix.astype(np.float64) @ qvec.astype(np.float64)).tolist()
    return dict(zip(ids, scores, strict=True))


# ---- what each engine builds ----------------------------------------------------------------


def test_each_level_is_recorded_and_built_as_said(engine, client, indexes):
    for level, name in indexes.items():
        assert read_spec(client, name).compression == level
        field = read_mappings(client, name)["properties"][VECTOR_FIELD]
        if engine.name == "elasticsearch":
            types = {"none": "hnsw", "4x": "int8_hnsw", "8x": "int4_hnsw", "32x": "bbq_hnsw"}
            assert field["index_options"]["type"] == types[level]
        else:
            encoder = field["method"]["parameters"].get("encoder")
            assert (encoder or {}).get("name") == ("sq" if level == "4x" else None)


@pytest.mark.parametrize("level", LEVELS)
def test_a_level_the_engine_cannot_build_is_refused_before_anything_is_created(
    engine, client, encoder, engine_index, level
):
    if level in BUILT[engine.name]:
        return  # built above
    with pytest.raises(BadInput) as caught:
        ensure_index(client, engine_index, IndexSpec.of(encoder), IndexOptions(compression=level))
    assert "builds 4x only" in caught.value.message and "Elasticsearch for 8x and 32x" in (
        caught.value.message
    )
    assert not client.indices.exists(index=engine_index)


def test_faiss_with_compression_is_refused_on_opensearch(engine, client, encoder, engine_index):
    if engine.name != "opensearch":
        return
    options = IndexOptions(engine="faiss", compression="4x")
    with pytest.raises(BadInput, match="with --engine lucene"):
        ensure_index(client, engine_index, IndexSpec.of(encoder), options)
    assert not client.indices.exists(index=engine_index)


def test_another_level_on_an_existing_index_is_refused(client, encoder, indexes):
    name = indexes["4x"]
    with pytest.raises(BadInput, match="was built with --compression 4x, not none"):
        ensure_index(client, name, IndexSpec.of(encoder), IndexOptions(compression="none"))
    assert not ensure_index(client, name, IndexSpec.of(encoder), IndexOptions())  # as it is


# ---- exact scores in every mode -------------------------------------------------------------


def test_exact_path_equals_numpy_on_every_level(client, encoder, indexes, corpus, queries):
    texts, qvecs = queries
    rng = np.random.default_rng(3)
    lists = [[f"d{i}" for i in rng.choice(N_DOCS, 100, replace=False)] for _ in texts]
    for name in indexes.values():
        runs = Rerank(client, name, encoder).rerank_many(texts, lists, k=100)
        for qvec, ids, hits in zip(qvecs, lists, runs, strict=True):
            want = truth(corpus, qvec)
            assert sorted(h.doc_id for h in hits) == sorted(ids)
            np.testing.assert_allclose(
                [h.score for h in hits], [want[h.doc_id] for h in hits], atol=1e-5, rtol=0
            )
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_elasticsearch_exact_path_needs_the_rescore_on_quantised_fields(
    engine, client, indexes, corpus, queries
):
    """Without `rescore_vector` the ids-filtered knn returns the quantised scores: the option
    is what makes the exact path exact (so the test above could fail)."""
    if engine.name != "elasticsearch":
        return
    _, qvecs = queries
    ids = [f"d{i}" for i in range(100)]
    for level in ("4x", "8x", "32x"):
        backend = backend_of(client)
        body = {
            "size": 100,
            "query": backend.exact_query(
                qvecs[0].tolist(), ids, similarity=None, field=VECTOR_FIELD
            ),
        }
        (hits,) = msearch(client, indexes[level], [body])
        want = truth(corpus, qvecs[0])
        errors = [abs(backend.to_similarity(h["_score"], "dot") - want[h["_id"]]) for h in hits]
        assert max(errors) > 1e-3, level


def candidates(client, index: str, qvec: np.ndarray, n: int, backend) -> list[str]:
    # Only called for compressed indexes.
    """The ids the compressed graph finds for n: the same search without re-scoring."""
    clause = backend.knn_query(qvec.tolist(), n, vector_field=VECTOR_FIELD)
    if backend.name == "elasticsearch":  # as the oversampled search asks for them
        clause["knn"]["num_candidates"] = max(n, 100)
        # bbq's mapping re-scores x3 by itself unless told not to (0: off).
        clause["knn"]["rescore_vector"] = {"oversample": 0}
    (hits,) = msearch(client, index, [{"size": n, "_source": False, "query": clause}])
    return [h["_id"] for h in hits]


def test_knn_scores_equal_numpy_and_rank_the_candidates_exactly(
    client, encoder, indexes, corpus, queries
):
    texts, qvecs = queries
    backend = backend_of(client)
    for level, name in indexes.items():
        knn = Knn(client, name, encoder, oversample=OVERSAMPLE, source=False)
        runs = knn.search_many(texts, k=K)
        recalls = []
        for qvec, hits in zip(qvecs, runs, strict=True):
            want = truth(corpus, qvec)
            assert len(hits) == K
            np.testing.assert_allclose(
                [h.score for h in hits], [want[h.doc_id] for h in hits], atol=1e-5, rtol=0
            )
            if level == "none":
                continue
            found = candidates(client, name, qvec, K * OVERSAMPLE, backend)
            assert len(found) == K * OVERSAMPLE
            exact_top = sorted(found, key=lambda d: want[d], reverse=True)[:K]
            recalls.append(len(set(exact_top) & {h.doc_id for h in hits}) / K)
            # Same ids in the same order (two exact scores equal to float32 may swap).
            for got, expected in zip(hits, exact_top, strict=True):
                assert abs(want[got.doc_id] - want[expected]) < 1e-6, level
        if recalls:
            assert np.mean(recalls) == 1.0, level


def test_hybrid_dense_side_is_exact_on_compressed_indexes(
    client, encoder, indexes, corpus, queries
):
    texts, qvecs = queries
    for level, name in indexes.items():
        if level == "none":
            continue
        hybrid = make_searcher("hybrid", client, name, encoder, oversample=3, source=False)
        assert isinstance(hybrid, Hybrid) and hybrid.dense.oversample == 3
        runs = hybrid.search_many(texts, k=20)
        for qvec, hits in zip(qvecs, runs, strict=True):
            want = truth(corpus, qvec)
            dense = [h for h in hits if h.similarity is not None]
            assert dense
            np.testing.assert_allclose(
                [h.similarity for h in dense], [want[h.doc_id] for h in dense], atol=1e-5
            )


def test_cli_ingest_compression_is_refused_in_one_sentence(engine, engine_index, tmp_path):
    if engine.name != "opensearch":
        return
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "1", "text": "a"}\n')
    result = CliRunner().invoke(
        main,
        ["ingest", str(corpus), "--index", engine_index, "--model", "minilm"]
        + ["--compression", "32x"],
        env=engine.env,
    )
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: OpenSearch cannot build --compression 32x"), lines
    assert "Traceback" not in result.output


# ---- the gateway -----------------------------------------------------------------------------


def test_gateway_neural_and_hybrid_are_exact_on_a_compressed_index(
    engine, client, tiny_model_dir, request, engine_index
):
    """`neural` through a real `dotbridge serve` (the tiny model, 32 dimensions: 4x on both
    engines) returns the exact top hits of oversampled candidates with float32 scores."""
    from tests.gateway_fixtures import answer
    from tests.gateway_fixtures import request as http

    gateway = request.getfixturevalue(
        "gateway_url" if engine.name == "opensearch" else "es_gateway_url"
    )
    tiny = Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")
    rng = np.random.default_rng(11)
    matrix = rng.standard_normal((1000, tiny.dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"g{i}" for i in range(len(matrix))]
    ensure_index(client, engine_index, IndexSpec.of(tiny), IndexOptions(compression="4x"))
    actions = (
        {
            "_index": engine_index,
            "_id": i,
            "doc_id": i,
            "text": f"doc {i}",
            VECTOR_FIELD: v.tolist(),
        }
        for i, v in zip(ids, matrix, strict=True)
    )
    backend = backend_of(client)
    backend.bulk(client, actions, chunk_size=500)
    client.indices.refresh(index=engine_index)
    texts = [r["text"] for r in read_jsonl(datasets_dir() / "scifact" / "queries.jsonl", 5)]
    for text, qvec in zip(texts, tiny.encode_queries(texts), strict=True):
        want = truth((ids, matrix), qvec)
        body = {"size": 10, "query": {"neural": {VECTOR_FIELD: {"query_text": text, "k": 10}}}}
        resp = http(gateway, "POST", f"/{engine_index}/_search", body)
        hits = answer(resp)["hits"]["hits"]
        assert resp.status == 200 and len(hits) == 10
        scores = [backend.to_similarity(h["_score"], "dot") for h in hits]
        np.testing.assert_allclose(scores, [want[h["_id"]] for h in hits], atol=1e-5, rtol=0)
        found = candidates(client, engine_index, qvec, 10 * 5, backend)
        exact_top = sorted(found, key=lambda d: want[d], reverse=True)[:10]
        for h, expected in zip(hits, exact_top, strict=True):
            assert abs(want[h["_id"]] - want[expected]) < 1e-6


def test_footprint_reports_what_each_level_keeps_per_vector(engine, client, indexes, corpus):
    """The memory and disk per vector that eval-all --compression reports, from the engine's own
    figures, against the float32 vectors' plain size (n x dims x 4 bytes, per vector)."""
    from bridge.compression import footprint

    _, matrix = corpus
    floats = matrix.shape[1] * 4  # bytes of one float32 vector
    sizes = {level: footprint(client, index) for level, index in indexes.items()}
    assert all(size.vectors == N_DOCS for size in sizes.values())
    plain = sizes["none"]
    # float32: the vectors the graph walks plus the graph itself, all of it on disk too.
    assert floats < plain.memory_per_vector < 1.5 * floats
    assert plain.disk_per_vector >= plain.memory_per_vector
    for level, size in sizes.items():
        if level == "none":
            continue
        # A compressed level walks a quantised copy (at most 1 byte a dimension) and the graph,
        # and keeps the float32 vectors on disk for exact scores.
        assert size.memory_per_vector < 0.5 * plain.memory_per_vector, level
        assert size.disk_per_vector > floats + size.memory_per_vector * 0.9, level
    if "32x" in sizes:
        assert sizes["32x"].memory_per_vector < sizes["8x"].memory_per_vector
        assert sizes["8x"].memory_per_vector < sizes["4x"].memory_per_vector
