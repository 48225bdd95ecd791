"""`dotbridge serve` as a real process in front of a real node, over HTTP: nothing mocked.

Pass-through parity with the cluster, a client through the gateway, every dotbridge feature
against `dotbridge search` in the same mode, Discover's own bodies on per-mode names, the model
API, refusals and outages. The module runs once per engine (`engine`): a gateway in front of
OpenSearch, then one in front of Elasticsearch.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.encoder import Encoder
from bridge.indexes import IndexSpec, available_analyzer
from bridge.search import make_searcher, to_similarity
from bridge.search.bodies import bm25_query
from mappings import Similarity
from tests import discover_bodies
from tests.gateway_fixtures import (
    SCIFACT,
    answer,
    dotbridge_index,
    read_jsonl,
    request,
    running_gateway,
    start_gateway,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.integration

N_DOCS = 600
QUERIES = 6


@pytest.fixture(scope="module")
def client(engine):
    return engine.client


@pytest.fixture(scope="module")
def gateway(engine, request) -> str:
    """The session's gateway in front of the engine's node."""
    name = "gateway_url" if engine.name == "opensearch" else "es_gateway_url"
    return request.getfixturevalue(name)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    # The gateway serves the same checkpoint with mean pooling (see gateway_fixtures).
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def queries() -> list[str]:
    return [row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl", QUERIES)]


@pytest.fixture(scope="module")
def index(client, encoder) -> Iterator[str]:
    """SciFact's first N_DOCS in a dotbridge index on 2 shards, with its per-mode aliases."""
    yield from dotbridge_index(client, encoder, N_DOCS)


def search(base: str, target: str, body: dict, params: str = "") -> dict:
    resp = request(base, "POST", f"/{target}/_search{params}", body)
    out = answer(resp)
    assert resp.status == 200, out
    return out


def ids(resp: dict) -> list[str]:
    return [h["_id"] for h in resp["hits"]["hits"]]


# ---- pass-through ------------------------------------------------------------------------------

VOLATILE = {"took", "_scroll_id", "pit_id", "creation_time", "creation.date", "epoch", "timestamp"}


def normalized(value: Any, index: str) -> Any:
    """The answer with the index name replaced and the per-request values (took, ids of
    scrolls and PITs, clocks) dropped."""
    if isinstance(value, dict):
        return {
            normalized(k, index): normalized(v, index)
            for k, v in value.items()
            if k not in VOLATILE
        }
    if isinstance(value, list):
        return [normalized(v, index) for v in value]
    if isinstance(value, str):
        return value.replace(index, "IDX")
    return value


def exchange(base: str, index: str, engine: str) -> list[tuple[str, int, Any]]:
    """A fixed list of requests, as a client makes them: (what, status, normalized answer).

    Point-in-time searches have their own endpoints on each engine."""
    out: list[tuple[str, int, Any]] = []

    def do(what, method, path, body=None, *, volatile=(), **kwargs):
        resp = request(base, method, path.replace("{I}", index), body, **kwargs)
        data = answer(resp) if method != "HEAD" else resp.headers.get("content-length")
        kept = {k: v for k, v in data.items() if k not in volatile} if volatile else data
        out.append((what, resp.status, normalized(kept, index)))
        return data

    do("create", "PUT", "/{I}", {"mappings": {"properties": {"n": {"type": "integer"}}}})
    docs = []
    for i in range(5):
        docs += [{"index": {"_id": str(i)}}, {"n": i, "text": f"doc number {i}"}]
    do("bulk", "POST", "/{I}/_bulk?refresh=true", docs, ndjson=True)
    do("get", "GET", "/{I}/_doc/1")
    do(
        "mget",
        "POST",
        "/_mget",
        {"docs": [{"_index": index, "_id": "1"}, {"_index": index, "_id": "9"}]},
    )
    do("cat indices", "GET", "/_cat/indices/{I}?format=json&h=index,health,status,docs.count")
    do("cat count", "GET", "/_cat/count/{I}?format=json")
    first = do("scroll", "POST", "/{I}/_search?scroll=1m", {"size": 2, "sort": ["n"]})
    do("scroll next", "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": first["_scroll_id"]})
    do("scroll clear", "DELETE", "/_search/scroll", {"scroll_id": first["_scroll_id"]})
    if engine == "opensearch":
        pit = do("pit", "POST", "/{I}/_search/point_in_time?keep_alive=1m")["pit_id"]
        do("pit search", "POST", "/_search", {"pit": {"id": pit}, "size": 2, "sort": ["n"]})
        do("pit delete", "DELETE", "/_search/point_in_time", {"pit_id": [pit]})
    else:
        pit = do("pit", "POST", "/{I}/_pit?keep_alive=1m", volatile={"id"})["id"]
        do("pit search", "POST", "/_search", {"pit": {"id": pit}, "size": 2, "sort": ["n"]})
        do("pit delete", "DELETE", "/_pit", {"id": pit})
    lines = [{"index": index}, {"query": {"match": {"text": "number"}}, "sort": ["n"]}]
    lines += [{}, {"size": 0}]
    do("msearch", "POST", "/{I}/_msearch", lines, ndjson=True)
    do("head index", "HEAD", "/{I}")
    do("head doc", "HEAD", "/{I}/_doc/1")
    do("head missing", "HEAD", "/{I}/_doc/404")
    do("404", "GET", "/{I}/_doc/404")
    do("404 index", "GET", "/no-such-index-{I}/_search")
    do("400", "POST", "/{I}/_search", {"query": {"bogus": {}}})
    do("400 json", "POST", "/{I}/_search", b"{not json")
    do("delete", "DELETE", "/{I}")
    return out


def test_pass_through_answers_as_the_cluster(gateway, engine):
    direct_index = f"test-parity-{uuid.uuid4().hex[:8]}"
    gateway_index = f"test-parity-{uuid.uuid4().hex[:8]}"
    direct = exchange(engine.settings.url, direct_index, engine.name)
    through = exchange(gateway, gateway_index, engine.name)
    statuses = {what: status for what, status, _ in direct}
    assert statuses["400"] == 400 and statuses["404"] == 404 and statuses["head missing"] == 404
    for (what, status, data), (_, g_status, g_data) in zip(direct, through, strict=True):
        assert (what, g_status) == (what, status)
        assert g_data == data, what


def test_the_engines_client_ingests_and_searches_through_the_gateway(
    gateway, client, encoder, tmp_path, engine_index
):
    """opensearch-py or elasticsearch-py, as the gateway's cluster is: detected through it."""
    index_name = engine_index
    from ingest.pipeline import ingest_corpus

    corpus = tmp_path / "corpus.jsonl"
    rows = read_jsonl(SCIFACT / "corpus.jsonl", 40)
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    through = connect(ConnectionSettings(url=gateway))
    assert type(through) is type(client)
    stats = ingest_corpus(
        corpus, client=through, index=index_name, encoder=encoder, rejects=tmp_path / "r.jsonl"
    )
    assert (stats.indexed, stats.rejected) == (40, 0)
    assert client.count(index=index_name)["count"] == 40
    body = {"query": {"match": {"text": "cells"}}, "size": 20}
    direct_hits = client.search(index=index_name, body=body)["hits"]["hits"]
    gateway_hits = through.search(index=index_name, body=body)["hits"]["hits"]
    assert direct_hits and [h["_id"] for h in gateway_hits] == [h["_id"] for h in direct_hits]
    assert through.get(index=index_name, id=rows[0]["_id"])["_source"]["text"] == rows[0]["text"]


# ---- the modes ----------------------------------------------------------------------------------


def test_neural_matches_knn_mode(gateway, engine, client, encoder, index, queries):
    knn = make_searcher("knn", client, index, encoder)
    for query in queries:
        body = {"size": 10, "query": {"neural": {"vector": {"query_text": query, "k": 10}}}}
        got = search(gateway, index, body)["hits"]["hits"]
        expected = knn.search(query, 10)
        assert [h["_id"] for h in got] == [h.doc_id for h in expected]
        for h, e in zip(got, expected, strict=True):
            similarity = to_similarity(h["_score"], Similarity.DOT, engine.backend)
            assert similarity == pytest.approx(e.score, abs=1e-4)
    # The engine's client (opensearch-py gzips its request bodies, elasticsearch-py checks
    # the product header of every answer): the gateway serves it all the same.
    through = connect(ConnectionSettings(url=gateway))
    body = {"size": 10, "query": {"neural": {"vector": {"query_text": queries[0], "k": 10}}}}
    got = through.search(index=index, body=body)["hits"]["hits"]
    assert [h["_id"] for h in got] == [h.doc_id for h in knn.search(queries[0], 10)]


def test_serve_encodes_with_the_runtime_it_is_given(
    gateway, engine, tiny_model_dir, index, queries, tmp_path
):
    """`serve --runtime onnx` answers as the torch gateway does (same ids, scores within
    1e-4); `--quantize int8` is another model, refused on a float32 index in one sentence that
    names the setting to serve it with."""
    torch_hits = [
        search(gateway, index, {"query": {"neural": {"vector": {"query_text": q, "k": 10}}}})
        for q in queries
    ]
    for extra in (("--runtime", "onnx"), ("--quantize", "int8")):
        log = tmp_path / f"serve{'-'.join(extra)}.log"
        with running_gateway(engine.settings, tiny_model_dir, log, *extra) as url:
            (served,) = answer(request(url, "GET", "/_dotbridge"))["models"]
            for query, expected in zip(queries, torch_hits, strict=True):
                body = {"query": {"neural": {"vector": {"query_text": query, "k": 10}}}}
                resp = request(url, "POST", f"/{index}/_search", body)
                got = answer(resp)
                if extra[0] == "--quantize":
                    assert resp.status == 400, got
                    reason = got["error"]["reason"]
                    assert reason.endswith("--quantize none.") and reason.count(". ") == 0, reason
                    continue
                assert resp.status == 200, got
                assert ids(got) == ids(expected)
                scores = [h["_score"] for h in got["hits"]["hits"]]
                np.testing.assert_allclose(
                    scores, [h["_score"] for h in expected["hits"]["hits"]], rtol=1e-4, atol=1e-4
                )
        assert (served["runtime"], served["quantization"]) == (
            ("onnx", "none") if extra[0] == "--runtime" else ("onnx", "int8")
        )


def test_neural_matches_the_search_command(gateway, engine, tiny_model_dir, index):
    query = "vitamin d and bone fractures"
    args = ["search", query, "--index", index, "--mode", "knn", "-k", "8", "--json"]
    args += ["--model", str(tiny_model_dir), "--pooling", "mean", "--device", "cpu"]
    args += ["--url", engine.settings.url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    expected = [json.loads(line)["doc_id"] for line in result.output.splitlines() if line.strip()]
    body = {"size": 8, "query": {"neural": {"vector": {"query_text": query, "k": 8}}}}
    assert ids(search(gateway, index, body)) == expected


def test_rerank_matches_rerank_mode(gateway, client, encoder, index, queries):
    rerank = make_searcher("rerank", client, index, encoder, candidates=100)
    for query in queries:
        expected = rerank.search(query, 10)
        body = {
            "size": 10,
            "query": bm25_query(query),
            "ext": {"rerank": {"query_context": {"query_text": query}}},
        }
        got = search(gateway, index, body)
        assert ids(got) == [h.doc_id for h in expected]
        scores = [h["_score"] for h in got["hits"]["hits"]]
        np.testing.assert_allclose(scores, [h.score for h in expected], atol=1e-4)
        # Paging cuts the same global ranking; query_text_path reads the text from the body.
        paged = {
            "from": 4,
            "size": 6,
            "query": {"multi_match": {**bm25_query(query)["multi_match"]}},
            "ext": {"rerank": {"query_context": {"query_text_path": "query.multi_match.query"}}},
        }
        assert ids(search(gateway, index, paged)) == [h.doc_id for h in expected[4:10]]


@pytest.mark.parametrize(("fusion", "weight"), [("rrf", 0.5), ("linear", 0.3)])
def test_hybrid_matches_hybrid_mode(gateway, client, encoder, index, queries, fusion, weight):
    hybrid = make_searcher("hybrid", client, index, encoder, fusion=fusion, weight=weight)
    for query in queries:
        expected = hybrid.search(query, 10)
        body = {
            "size": 10,
            "query": {
                "hybrid": {
                    "queries": [
                        bm25_query(query),
                        {"neural": {"vector": {"query_text": query, "k": 100}}},
                    ]
                }
            },
            "ext": {"dotbridge": {"fusion": fusion, "weight": weight}},
        }
        got = search(gateway, index, body)
        assert ids(got) == [h.doc_id for h in expected]
        np.testing.assert_allclose(
            [h["_score"] for h in got["hits"]["hits"]], [h.score for h in expected], atol=1e-6
        )


def test_neural_inside_bool_keeps_its_filter(gateway, client, index):
    term = {"match": {"text": "cells"}}
    matching = {
        h["_id"]
        for h in client.search(index=index, body={"query": term, "size": 1000, "_source": False})[
            "hits"
        ]["hits"]
    }
    body = {
        "size": 20,
        "query": {
            "bool": {
                "must": [{"neural": {"vector": {"query_text": "stem cells", "k": 200}}}],
                "filter": [term],
            }
        },
    }
    got = ids(search(gateway, index, body))
    assert got and set(got) <= matching
    # The neural clause's own filter restricts the k-NN search itself: k hits that all match.
    inner = {
        "size": 15,
        "query": {"neural": {"vector": {"query_text": "stem cells", "k": 15, "filter": term}}},
    }
    got = ids(search(gateway, index, inner))
    assert len(got) == 15 and set(got) <= matching


# ---- Discover -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bm25", "knn", "rerank", "hybrid"])
def test_discover_bodies_on_per_mode_names(gateway, client, encoder, index, mode):
    """Discover's own request bodies for a DQL and a Lucene text, replayed against
    `<index>.<mode>`, rank as `dotbridge search --mode <mode>` does for the typed text.

    The bodies are rebuilt from OpenSearch-Dashboards' sources, cited file by file in
    tests/discover_bodies.py: update_search_source.ts (sort, size 500, version, highlightAll,
    filters), search_source.ts flatten() (stored_fields, script_fields, docvalue_fields,
    _source, query, highlight), build_opensearch_query.ts (bool must/filter/should/must_not),
    kuery/functions/is.ts and and.ts (DQL free text: multi_match best_fields lenient in
    bool.filter), from_lucene.ts, lucene_string_to_dsl.ts and decorate_query.ts (Lucene:
    query_string with analyze_wildcard and time_zone in bool.must).
    """
    text = "vitamin d deficiency and bone health"
    searcher = make_searcher(mode, client, index, encoder)  # the command's defaults
    # Discover asks for 500 rows; rerank and hybrid rank their default first stage (100), so
    # they show at most 100 and the first rows are the command's default answer.
    rows = 100 if mode in ("rerank", "hybrid") else discover_bodies.SAMPLE_SIZE
    expected = [h.doc_id for h in searcher.search(text, rows)]
    default = [h.doc_id for h in searcher.search(text, 10)]
    assert expected and len(expected) <= rows
    for body in (discover_bodies.dql_body(text), discover_bodies.lucene_body(text)):
        got = search(gateway, f"{index}.{mode}", body, discover_bodies.PARAMS)
        assert ids(got) == expected
        assert ids(got)[:10] == default
        assert all(h["_version"] == 1 for h in got["hits"]["hits"])  # version: true kept
        assert isinstance(got["hits"]["total"], dict)


def test_discover_filters_restrict_the_mode_and_empty_text_passes_through(
    gateway, client, encoder, index, engine
):
    pill = {"match_phrase": {"text": "cells"}}
    restriction = {"bool": {"filter": [pill]}}
    text = "immune response"
    for mode in ("knn", "hybrid"):
        searcher = make_searcher(mode, client, index, encoder, filter=restriction)
        expected = [h.doc_id for h in searcher.search(text, 50)]
        body = discover_bodies.dql_body(text, filters=[pill], size=50)
        assert ids(search(gateway, f"{index}.{mode}", body)) == expected
    # Nothing typed: Discover's match_all body is the cluster's answer, unchanged.
    empty = discover_bodies.empty_body(size=20)
    got = search(gateway, f"{index}.knn", empty, discover_bodies.PARAMS)
    direct = search(engine.settings.url, f"{index}.knn", empty, discover_bodies.PARAMS)
    assert ids(got) == ids(direct) and len(ids(got)) == 20


def test_rerank_highlights_the_typed_text(gateway, index):
    body = discover_bodies.dql_body("vitamin", size=5)
    hits = search(gateway, f"{index}.rerank", body)["hits"]["hits"]
    marked = [h for h in hits if "highlight" in h]
    assert marked, "no highlight on re-ranked hits"
    tag = discover_bodies.HIGHLIGHT["pre_tags"][0]
    assert any(tag in fragment for h in marked for v in h["highlight"].values() for fragment in v)


# ---- msearch, model API, refusals ---------------------------------------------------------------


def test_msearch_mixes_rewritten_and_plain_items_in_order(gateway, client, encoder, index, queries):
    query = queries[0]
    lines = [
        {"index": index},
        {"size": 5, "query": {"neural": {"vector": {"query_text": query, "k": 5}}}},
        {},
        {"size": 5, "query": bm25_query(query)},
        {"index": f"{index}.rerank"},
        discover_bodies.lucene_body(query, size=5),
        {},
        {"query": {"neural": {"vector": {"query_text": "   "}}}},
    ]
    resp = request(gateway, "POST", f"/{index}/_msearch", lines, ndjson=True)
    assert resp.status == 200
    knn_ids, bm25_ids, rerank_ids, error = answer(resp)["responses"]
    assert ids(knn_ids) == [
        h.doc_id for h in make_searcher("knn", client, index, encoder).search(query, 5)
    ]
    assert ids(bm25_ids) == ids(search(gateway, index, {"size": 5, "query": bm25_query(query)}))
    expected = make_searcher("rerank", client, index, encoder).search(query, 5)
    assert ids(rerank_ids) == [h.doc_id for h in expected]
    assert error["status"] == 400 and "empty" in error["error"]["reason"]


def test_model_api_in_ml_commons_shapes(gateway, client, encoder, index):
    texts = ["vitamin d", "stem cells and the immune system"]
    (model,) = answer(request(gateway, "GET", "/_dotbridge"))["models"]
    path = f"/_dotbridge/models/{model['name']}/_embed"
    resp = request(gateway, "POST", path, {"input": texts})
    vectors = answer(resp)
    assert resp.status == 200 and isinstance(vectors, list)
    np.testing.assert_allclose(vectors, encoder.encode_passages(texts), rtol=1e-4, atol=1e-5)

    top = client.search(index=index, body={"size": 8, "_source": False})["hits"]["hits"]
    doc_ids = [h["_id"] for h in top]
    resp = request(
        gateway,
        "POST",
        f"/_dotbridge/rerank/{index}",
        {"query": "vitamin d", "documents": doc_ids, "top_n": 5},
    )
    assert resp.status == 200
    # ml-commons needs JSON floats: never a bare integer as a relevance score.
    raw_scores = re.findall(rb'"relevance_score":\s*([^,}\s]+)', resp.data)
    assert len(raw_scores) == 5 and all(b"." in v or b"e" in v for v in raw_scores)
    ranked = answer(resp)
    assert len(ranked) == 5 and all(isinstance(r["relevance_score"], float) for r in ranked)
    stored = client.mget(index=index, body={"ids": doc_ids})["docs"]
    matrix = np.asarray([d["_source"]["vector"] for d in stored], dtype=np.float64)
    reference = matrix @ encoder.encode_queries(["vitamin d"])[0].astype(np.float64)
    order = list(np.argsort(-reference, kind="stable")[:5])
    assert [r["index"] for r in ranked] == order
    np.testing.assert_allclose([r["relevance_score"] for r in ranked], reference[order], atol=1e-4)


def test_an_index_of_another_model_is_refused_in_one_sentence(
    gateway, engine, client, engine_index
):
    index_name = engine_index
    spec = IndexSpec(
        model="sentence-transformers/all-MiniLM-L6-v2",
        pooling="mean",
        normalize=True,
        similarity=Similarity.COSINE,
        dimension=384,
        weights_sha256="0" * 64,
    )
    body = engine.backend.index_body(
        dimension=384,
        similarity=Similarity.COSINE,
        meta=spec.meta(),
        analyzer=available_analyzer(client, "english"),
    )
    client.indices.create(index=index_name, body=body)
    body = {"query": {"neural": {"vector": {"query_text": "vitamin d", "k": 3}}}}
    resp = request(gateway, "POST", f"/{index_name}/_search", body)
    error = answer(resp)
    assert resp.status == 400 and error["status"] == 400
    reason = error["error"]["reason"]
    assert "sentence-transformers/all-MiniLM-L6-v2" in reason and "--model" in reason
    assert reason.count(". ") == 0 and reason.endswith(".")
    served = answer(request(gateway, "GET", "/_dotbridge"))["models"]
    assert [m["dimension"] for m in served] == [32]  # nothing was loaded for that index


def test_the_served_checkpoint_with_another_pooling_names_the_setting(
    gateway, engine, client, encoder, engine_index
):
    spec = dataclasses.replace(IndexSpec.of(encoder), pooling="cls")
    body = engine.backend.index_body(
        dimension=spec.dimension,
        similarity=spec.similarity,
        meta=spec.meta(),
        analyzer=available_analyzer(client, "english"),
    )
    client.indices.create(index=engine_index, body=body)
    body = {"query": {"neural": {"vector": {"query_text": "vitamin d", "k": 3}}}}
    resp = request(gateway, "POST", f"/{engine_index}/_search", body)
    reason = answer(resp)["error"]["reason"]
    assert resp.status == 400
    assert "pooling cls (index) vs mean (served)" in reason and "--pooling cls" in reason
    assert "--index" not in reason and reason.count(". ") == 0


def test_a_plain_index_gets_neural_rerank_and_hybrid_as_the_cluster_answers_them(
    gateway, client, engine, engine_index
):
    """Transparent where dotbridge owns nothing: the cluster's own answer (its neural-search's,
    or its refusal) to the very body the caller sent, never a dotbridge sentence."""
    index_name = engine_index
    client.indices.create(
        index=index_name, body={"mappings": {"properties": {"t": {"type": "text"}}}}
    )
    client.index(index=index_name, id="1", body={"t": "hello"}, refresh=True)
    direct = engine.settings.url.rstrip("/")
    for body in (
        {"query": {"neural": {"vector": {"query_text": "hello", "model_id": "m"}}}},
        {"query": {"match": {"t": "hello"}}, "ext": {"rerank": {"query_context": {"x": 1}}}},
        {"query": {"hybrid": {"queries": [{"match": {"t": "hello"}}]}}},
    ):
        through = request(gateway, "POST", f"/{index_name}/_search", body)
        expected = request(direct, "POST", f"/{index_name}/_search", body)
        assert through.status == expected.status, (body, through.data[:300])
        got, want = answer(through), answer(expected)
        assert b"dotbridge" not in through.data
        if "error" in want:
            assert got["error"]["type"] == want["error"]["type"]
        else:
            assert ids(got) == ids(want)
    plain = search(gateway, index_name, {"query": {"match": {"t": "hello"}}})
    assert ids(plain) == ["1"]


def test_an_outage_of_the_cluster_is_a_502(
    gateway_url, opensearch_settings, tiny_model_dir, tmp_path
):
    """A gateway in front of another gateway: when the inner one stops, the outer one's
    upstream is gone, and it says so in OpenSearch's error JSON with a 502."""
    inner, inner_url = start_gateway(opensearch_settings, tiny_model_dir, tmp_path / "inner.log")
    try:
        wait_ready(inner, inner_url, tmp_path / "inner.log")
        outer, outer_url = start_gateway(
            ConnectionSettings(url=inner_url), tiny_model_dir, tmp_path / "outer.log"
        )
        try:
            wait_ready(outer, outer_url, tmp_path / "outer.log")
            assert request(outer_url, "GET", "/").status == 200
            stop(inner)
            for method, path, body in (
                ("GET", "/", None),
                ("POST", "/any/_search", {"query": {"neural": {"vector": {"query_text": "x"}}}}),
            ):
                resp = request(outer_url, method, path, body)
                error = answer(resp)
                assert resp.status == 502, error
                assert error["status"] == 502 and "did not answer" in error["error"]["reason"]
        finally:
            stop(outer)
    finally:
        stop(inner)
