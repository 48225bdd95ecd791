"""The backend layer without a server: detection from recorded answers, Elasticsearch's version
check, index bodies and clauses of each engine, and the optional client kept optional."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mappings
from bridge.backends import UnsupportedCluster, backend_named
from bridge.backends.detect import read_probe
from bridge.backends.elasticsearch import check_version, num_candidates
from bridge.config import ConnectionSettings
from bridge.errors import BadInput
from bridge.search.bodies import exact_score_body, knn_body
from bridge.search.scores import from_similarity, to_similarity
from mappings import Similarity
from tests.node_fixtures import free_port

OS = backend_named("opensearch")
ES = backend_named("elasticsearch")
ROOT = Path(__file__).resolve().parents[1]

# ---- detection ---------------------------------------------------------------------------------

# `GET /` as the engines answered it (bodies shortened to the keys read).
OPENSEARCH_ROOT = {
    "name": "dotbridge-local",
    "version": {"distribution": "opensearch", "number": "3.5.0", "build_type": "zip"},
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}
ELASTICSEARCH_ROOT = {
    "name": "node-1",
    "version": {"number": "8.19.21", "build_flavor": "default"},
    "tagline": "You Know, for Search",
}
ES_405 = {"error": "Incorrect HTTP method for uri [/] and method [GET], allowed: [DELETE]"}


def answer(body: dict) -> bytes:
    return json.dumps(body).encode()


def test_opensearch_is_told_by_its_distribution_and_header():
    probe = read_probe(200, {"X-OpenSearch-Version": "OpenSearch/3.5.0"}, answer(OPENSEARCH_ROOT))
    assert (probe.engine, probe.version) == ("opensearch", "3.5.0")
    # Without the header (OpenSearch 1.x), the body alone says it.
    assert read_probe(200, {}, answer(OPENSEARCH_ROOT)).engine == "opensearch"


def test_elasticsearch_is_told_by_its_product_header_even_on_an_error():
    probe = read_probe(405, {"X-elastic-product": "Elasticsearch"}, answer(ES_405))
    assert (probe.engine, probe.version, probe.status) == ("elasticsearch", None, 405)
    probe = read_probe(200, {"x-elastic-product": "Elasticsearch"}, answer(ELASTICSEARCH_ROOT))
    assert (probe.engine, probe.version) == ("elasticsearch", "8.19.21")


def test_an_elasticsearch_older_than_the_header_is_told_by_its_tagline():
    old = {**ELASTICSEARCH_ROOT, "version": {"number": "7.10.2"}}
    assert (read_probe(200, {}, answer(old)).engine, "7.10.2") == ("elasticsearch", "7.10.2")


def test_an_answer_that_names_no_engine_is_left_undecided():
    for status, body in ((401, b'{"error": "unauthorized"}'), (200, b"not json"), (503, b"")):
        assert read_probe(status, {}, body).engine is None


# ---- Elasticsearch versions --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["8.15.0", "8.19.21", "9.0.0", "9.1.3-SNAPSHOT"])
def test_supported_elasticsearch_versions_pass(version):
    check_version(version, "http://es:9200")


@pytest.mark.parametrize("version", ["7.17.9", "8.14.3", "8.0.0", "10.0.0", "unknown"])
def test_unsupported_elasticsearch_versions_are_one_sentence(version):
    with pytest.raises(UnsupportedCluster) as err:
        check_version(version, "http://es:9200")
    message = err.value.message
    assert f"Elasticsearch {version} at http://es:9200" in message
    assert "8.15 to 9.x" in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


# ---- index bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("similarity", "es_similarity"),
    [(Similarity.DOT, "max_inner_product"), (Similarity.COSINE, "cosine")],
)
def test_elasticsearch_index_body_is_opensearchs_with_a_dense_vector(similarity, es_similarity):
    options = dict(dimension=384, similarity=similarity, meta={"dotbridge": {"x": 1}}, m=24)
    options.update(ef_construction=200, shards=3, replicas=1, analyzer="standard")
    ours = ES.index_body(**options)
    theirs = mappings.index_body(**options)
    assert ours["mappings"]["properties"]["vector"] == {
        "type": "dense_vector",
        "dims": 384,
        "index": True,
        "similarity": es_similarity,
        "index_options": {"type": "hnsw", "m": 24, "ef_construction": 200},
    }
    # Everything else as OpenSearch's: text fields, doc_id, _meta, shards; no k-NN plugin switch.
    for body in (ours, theirs):
        del body["mappings"]["properties"]["vector"]
    assert "knn" not in ours["settings"]["index"]
    theirs["settings"]["index"].pop("knn")
    assert ours == theirs


def test_elasticsearch_refuses_opensearchs_engines_in_one_sentence():
    with pytest.raises(BadInput, match="--engine faiss is an OpenSearch k-NN engine"):
        ES.index_body(dimension=8, similarity="dot", meta={}, engine="faiss")


# ---- search clauses ----------------------------------------------------------------------------


def test_elasticsearch_knn_body_asks_k_of_num_candidates():
    body = knn_body([1.0, 2.0], 5, backend=ES, filter={"term": {"doc_id": "x"}})
    assert body["query"] == {
        "knn": {
            "field": "vector",
            "query_vector": [1.0, 2.0],
            "k": 5,
            "num_candidates": 100,
            "filter": {"term": {"doc_id": "x"}},
        }
    }
    assert body["size"] == 5 and body["sort"][0] == {"_score": {"order": "desc"}}
    assert knn_body([1.0], 5, backend=ES, ef_search=300)["query"]["knn"]["num_candidates"] == 300
    # Never fewer candidates than k, never more than Elasticsearch takes.
    assert (num_candidates(500, 50), num_candidates(9000, 20000)) == (500, 10_000)


def test_elasticsearch_exact_scoring_is_a_knn_query_over_exactly_the_ids():
    body = exact_score_body([0.5, 0.25], ["d1", "d2", "d3"], 2, similarity="dot", backend=ES)
    assert body["size"] == 2
    assert body["query"] == {
        "knn": {
            "field": "vector",
            "query_vector": [0.5, 0.25],
            "k": 3,
            "num_candidates": 3,
            "filter": {"ids": {"values": ["d1", "d2", "d3"]}},
        }
    }
    assert "script_score" in exact_score_body([1.0], ["a"], 1, similarity="dot")["query"]
    with pytest.raises(ValueError, match="1 to 10000 ids"):
        ES.exact_query([1.0], [str(i) for i in range(10_001)], similarity=Similarity.DOT, field="v")


def test_neural_options_elasticsearch_has_no_counterpart_for_are_refused():
    clause = ES.neural_knn(
        "vector",
        {"query_text": "q", "k": 7, "boost": 2.0, "method_parameters": {"ef_search": 50}},
        [1.0],
        10,
    )
    assert clause["knn"]["k"] == 7 and clause["knn"]["boost"] == 2.0
    assert clause["knn"]["num_candidates"] == 50
    with pytest.raises(BadInput, match="min_score"):
        ES.neural_knn("vector", {"query_text": "q", "min_score": 0.5}, [1.0], 10)


@pytest.mark.parametrize("backend", [OS, ES], ids=["opensearch", "elasticsearch"])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_scores_map_back_to_the_similarity(backend, similarity):
    values = [-40.0, -1.5, -0.01, 0.0, 0.3, 1.0, 17.25] if similarity == "dot" else [-1, 0, 0.7, 1]
    for value in values:
        score = from_similarity(value, similarity)
        assert score >= 0
        assert to_similarity(score, similarity, backend) == pytest.approx(value, abs=1e-12)


# ---- settings and the optional client ----------------------------------------------------------


def test_backend_setting_is_checked_and_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("DOTBRIDGE_BACKEND", "Elasticsearch")
    assert ConnectionSettings.from_env().backend == "elasticsearch"
    monkeypatch.setenv("DOTBRIDGE_BACKEND", "solr")
    with pytest.raises(BadInput, match="Backend 'solr' is unknown"):
        ConnectionSettings.from_env()


def test_without_the_elasticsearch_client_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "bridge.backends.elasticsearch", None)
    with pytest.raises(BadInput, match=r"pip install 'dotbridge\[elasticsearch\]'"):
        backend_named("elasticsearch")


def test_opensearch_work_never_imports_the_elasticsearch_client():
    code = (
        "import sys\n"
        "import bridge.cli, bridge.search, bridge.report, ingest.pipeline\n"
        "from bridge.client import connect\n"
        "from bridge.config import ConnectionSettings\n"
        "connect(ConnectionSettings(backend='opensearch'), check=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('elasticsearch', 'elastic_transport')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ---- elasticsearch-py's failures, as sentences (real sockets, no search engine) ----------------


def test_elasticsearch_clients_timeouts_and_refusals_are_one_sentence_each():
    from bridge.client import ClusterTimeout, connect, describe_failure
    from bridge.errors import ConnectionFailed
    from tests.silent_server import silent_server

    with silent_server() as server:
        url = f"http://127.0.0.1:{server.port}"
        settings = ConnectionSettings(url=url, timeout=1.5, backend="elasticsearch")
        client = connect(settings, check=False)  # the named engine's client, no request yet
        assert type(client).__name__ == "Elasticsearch"
        started = time.monotonic()
        with pytest.raises(ES.errors()) as raised:
            client.cluster.health()
        waited = time.monotonic() - started
    error = describe_failure(raised.value, settings)
    assert isinstance(error, ClusterTimeout)
    assert error.message == (
        f"{url} accepted the connection but sent no answer within 1.5 s: check that it is a "
        "healthy Elasticsearch node, or raise --timeout."
    )
    assert 1.5 <= waited < 10  # the read timeout, once: timeouts are not retried
    closed = ConnectionSettings(url=f"http://127.0.0.1:{free_port()}", backend="elasticsearch")
    with pytest.raises(ES.errors()) as raised:
        connect(closed, check=False).cluster.health()
    error = describe_failure(raised.value, closed)
    assert isinstance(error, ConnectionFailed)
    assert error.message.startswith(f"No Elasticsearch answers at {closed.url} (")
    assert "`dotbridge elasticsearch start`" in error.message
    # Named by --backend, nothing answering: detection names that engine as well.
    with pytest.raises(ConnectionFailed, match=f"No Elasticsearch answers at {closed.url}"):
        connect(closed)


@pytest.mark.parametrize("backend", [OS, ES], ids=["opensearch", "elasticsearch"])
def test_a_converted_score_prints_as_the_float32_the_engine_computed(backend):
    """The engine scores in float32 and sends 1.4908006; 1.4908006 - 1 in float64 would print
    0.49080060000000003 in --json and in the API. The similarity is that float32, shortest."""
    assert to_similarity(1.4908006, "dot", backend) == 0.4908006
    assert json.dumps(to_similarity(1.4908006, "dot", backend)) == "0.4908006"
    assert json.dumps(to_similarity(0.83716214, "cosine", backend)) == "0.6743243"
    assert to_similarity(0.5, "dot", backend) == -1.0  # 1 / (1 - d) for d < 0
