"""Compression without a server: index bodies per level, the widened and re-scored k-NN
clauses, the exact clause on quantised fields, and the gateway's neural rewrite."""

from __future__ import annotations

import pytest

from bridge.backends.base import candidates_for
from bridge.backends.elasticsearch import ELASTICSEARCH as ES
from bridge.backends.opensearch import OPENSEARCH as OS
from bridge.compression import CompressionRow, render_rows
from bridge.config import DEFAULT_OVERSAMPLE
from bridge.errors import BadInput
from bridge.gateway.rewrite import replace_neural
from bridge.search.checks import check_oversample
from mappings import Similarity

VEC = [0.5, -0.25, 1.0, 0.0]


def body(backend, compression):
    return backend.index_body(dimension=4, similarity="dot", meta={}, compression=compression)


def test_opensearch_builds_4x_as_lucene_sq_and_refuses_the_rest():
    plain = body(OS, "none")["mappings"]["properties"]["vector"]["method"]
    assert "encoder" not in plain["parameters"]
    sq = body(OS, "4x")["mappings"]["properties"]["vector"]["method"]
    assert sq["engine"] == "lucene" and sq["parameters"]["encoder"] == {"name": "sq"}
    assert "mode" not in body(OS, "4x")["mappings"]["properties"]["vector"]  # never on_disk
    for level in ("8x", "32x"):
        with pytest.raises(BadInput, match=f"cannot build --compression {level}.*4x only"):
            body(OS, level)
    with pytest.raises(BadInput, match="--engine lucene \\(not faiss\\)"):
        OS.index_body(dimension=4, similarity="dot", meta={}, engine="faiss", compression="4x")


@pytest.mark.parametrize(
    ("level", "kind"),
    [("none", "hnsw"), ("4x", "int8_hnsw"), ("8x", "int4_hnsw"), ("32x", "bbq_hnsw")],
)
def test_elasticsearch_index_type_per_level(level, kind):
    field = body(ES, level)["mappings"]["properties"]["vector"]
    assert field["index_options"]["type"] == kind


def test_candidates_are_oversample_times_k_within_limits():
    assert candidates_for(10, None, 10_000) == int(10 * DEFAULT_OVERSAMPLE)
    assert candidates_for(10, 3, 10_000) == 30
    assert candidates_for(10, 1.25, 10_000) == 13
    assert candidates_for(5000, 5, 10_000) == 10_000
    assert candidates_for(10, 1, 10_000) == 10


def test_opensearch_knn_on_compressed_index_widens_k_and_rescores():
    plain = OS.knn_query(VEC, 10, vector_field="vector")["knn"]["vector"]
    assert plain == {"vector": VEC, "k": 10}
    wide = OS.knn_query(VEC, 10, vector_field="vector", compression="4x", oversample=3)
    assert wide["knn"]["vector"]["k"] == 30 and "rescore" in wide["knn"]["vector"]


def test_elasticsearch_knn_on_compressed_index_rescores_oversample_times_k():
    plain = ES.knn_query(VEC, 10, vector_field="vector")["knn"]
    assert "rescore_vector" not in plain and plain["num_candidates"] == 100
    wide = ES.knn_query(VEC, 50, vector_field="vector", compression="32x", oversample=4)["knn"]
    assert wide["k"] == 50 and wide["rescore_vector"] == {"oversample": 4.0}
    assert wide["num_candidates"] == 200


def test_elasticsearch_exact_clause_rescores_on_quantised_fields_only():
    plain = ES.exact_query(VEC, ["a", "b"], similarity=Similarity.DOT, field="vector")
    assert "rescore_vector" not in plain["knn"]
    for level in ("4x", "8x", "32x"):
        clause = ES.exact_query(
            VEC, ["a", "b"], similarity=Similarity.DOT, field="vector", compression=level
        )
        assert clause["knn"]["rescore_vector"] == {"oversample": 1.0}
        assert clause["knn"]["filter"] == {"ids": {"values": ["a", "b"]}}


def test_gateway_neural_on_compressed_index_is_widened_and_rescored():
    neural = {"neural": {"vector": {"query_text": "q", "k": 10}}}
    vectors = {"q": VEC}
    os_plain = replace_neural(neural, vectors, "vector", OS)
    assert os_plain["knn"]["vector"]["k"] == 10
    os_wide = replace_neural(neural, vectors, "vector", OS, "4x")
    assert os_wide["knn"]["vector"]["k"] == 10 * DEFAULT_OVERSAMPLE
    assert "rescore" in os_wide["knn"]["vector"]
    es_wide = replace_neural(neural, vectors, "vector", ES, "8x")
    assert es_wide["knn"]["k"] == 10
    assert es_wide["knn"]["rescore_vector"] == {"oversample": DEFAULT_OVERSAMPLE}


def test_oversample_out_of_range_is_one_sentence():
    check_oversample(None)
    check_oversample(1.0)
    with pytest.raises(BadInput, match="--oversample must be from 1 to 10"):
        check_oversample(0.5)


def test_table_shows_the_difference_to_float32():
    rows = [
        CompressionRow("scifact", "E", "none", "knn", 0.645, 0.9, 3.0, 1572.0, 1600.0),
        CompressionRow("scifact", "E", "4x", "knn", 0.644, 0.9, 3.5, 424.0, 2000.0),
    ]
    table = render_rows(rows)
    assert "| scifact | E | 4x | knn | 0.6440 | -0.0010 |" in table
    assert "| scifact | E | none | knn | 0.6450 | – |" in table
