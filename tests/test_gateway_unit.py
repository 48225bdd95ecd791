"""The gateway's pure parts without a server: body rewriting, Discover's text, headers, errors,
connectors, and micro-batching run really concurrently on the tiny model."""

from __future__ import annotations

import asyncio
import json
import re
import threading

import numpy as np
import pytest

from bridge.errors import IndexMismatch
from bridge.gateway.batcher import MicroBatcher
from bridge.gateway.connectors import connector_requests, render
from bridge.gateway.discover import alias_name, mode_body, split_alias, typed_text
from bridge.gateway.errors import BadRequest, as_gateway_error, error_body
from bridge.gateway.mlapi import rerank_request
from bridge.gateway.msearch import parse_ndjson
from bridge.gateway.rewrite import (
    has_markers,
    hybrid_query,
    neural_clause,
    neural_texts,
    options,
    paging,
    replace_neural,
    rerank_text,
    strip_ext,
    with_filter,
)
from bridge.gateway.upstream import caller_headers, forward_headers, identity_key
from bridge.search.bodies import bm25_query, knn_body, knn_query
from tests.discover_bodies import dql_body, empty_body, lucene_body

VEC = np.arange(4, dtype=np.float32) / 7


def neural(text: str, **params) -> dict:
    return {"neural": {"vector": {"query_text": text, **params}}}


# ---- neural clauses ------------------------------------------------------------------------------


def test_neural_clauses_are_found_wherever_a_query_may_stand():
    body = {
        "query": {
            "bool": {
                "must": [neural("a", k=5)],
                "should": [{"dis_max": {"queries": [neural("b")]}}],
                "filter": [{"function_score": {"query": neural("c")}}],
            }
        },
        "post_filter": {"nested": {"path": "x", "query": neural("a")}},
    }
    assert neural_texts(body) == ["a", "b", "c", "a"]


def test_fields_called_neural_are_not_clauses():
    for node in (
        {"match": {"neural": "text"}},
        {"term": {"neural": {"value": "x"}}},
        {"neural": "text"},
    ):
        assert neural_clause(node) is None
        assert neural_texts({"query": node}) == []


def test_neural_becomes_the_knn_query_dotbridge_builds():
    body = {"size": 7, "query": {"bool": {"must": [neural("q", k=7, filter={"term": {"a": 1}})]}}}
    out = replace_neural(body, {"q": VEC}, "vector")
    assert out["query"]["bool"]["must"][0] == knn_query(VEC, 7, filter={"term": {"a": 1}})
    assert body["query"]["bool"]["must"][0] == neural("q", k=7, filter={"term": {"a": 1}})
    # Radial search keeps its threshold and has no k; boost passes through.
    radial = replace_neural(neural("q", min_score=0.5, boost=2), {"q": VEC}, "vector")
    assert radial["knn"]["vector"]["min_score"] == 0.5
    assert radial["knn"]["vector"]["boost"] == 2
    assert "k" not in radial["knn"]["vector"]
    # Without k, neural-search's default of 10.
    assert replace_neural(neural("q"), {"q": VEC}, "vector")["knn"]["vector"]["k"] == 10


@pytest.mark.parametrize(
    ("clause", "words"),
    [
        (neural(""), "empty"),
        (neural("x", kk=3), "unknown parameters"),
        (neural("x", k=0), "k"),
        ({"neural": {"vector": {"query_image": "..."}}}, "query_image"),
        ({"neural": {"vector": {"k": 3}}}, 'no "query_text"'),
        ({"neural": {"vector": {"query_txt": "x", "k": 3}}}, r"unknown parameters \['query_txt'\]"),
    ],
)
def test_bad_neural_clauses_are_refused_in_one_sentence(clause, words):
    with pytest.raises(BadRequest, match=words) as info:
        neural_texts({"query": clause})
    assert info.value.status == 400
    assert info.value.reason.count(". ") == 0  # one sentence


def test_neural_on_another_field_than_the_index_vectors_is_refused():
    with pytest.raises(BadRequest, match="'embedding'"):
        replace_neural({"neural": {"embedding": {"query_text": "q"}}}, {"q": VEC}, "vector")


def test_a_filter_goes_inside_knn_and_around_other_queries():
    restriction = {"term": {"a": 1}}
    inside = with_filter(neural("q", k=3), restriction)
    assert replace_neural(inside, {"q": VEC}, "vector") == knn_query(VEC, 3, filter=restriction)
    # The BM25 side gets the same shape as dotbridge's own filtered BM25 query.
    assert with_filter(bm25_query("q"), restriction) == bm25_query("q", filter=restriction)


# ---- ext, hybrid, paging ------------------------------------------------------------------------


def test_rerank_text_from_query_text_or_a_path():
    assert rerank_text({"ext": {"rerank": {"query_context": {"query_text": "x"}}}}) == "x"
    body = {
        "query": {"match": {"text": {"query": "vitamin d"}}},
        "ext": {"rerank": {"query_context": {"query_text_path": "query.match.text.query"}}},
    }
    assert rerank_text(body) == "vitamin d"
    assert rerank_text({"query": {}}) is None
    with pytest.raises(BadRequest, match="leads to nothing"):
        rerank_text({"ext": {"rerank": {"query_context": {"query_text_path": "query.nope"}}}})
    with pytest.raises(BadRequest, match="query_context"):
        rerank_text({"ext": {"rerank": {}}})


def test_options_and_strip_ext():
    body = {"ext": {"dotbridge": {"fusion": "linear", "weight": 0.25}, "other": 1}}
    opts = options(body)
    assert (opts.fusion, opts.weight, opts.rrf_k) == ("linear", 0.25, 60)
    assert strip_ext(body) == {"ext": {"other": 1}}
    assert strip_ext({"ext": {"rerank": {}}, "size": 1}) == {"size": 1}
    for bad in ({"fusion": "max"}, {"weight": 2}, {"candidates": 0}, {"depht": 5}):
        with pytest.raises(BadRequest):
            options({"ext": {"dotbridge": bad}})


def test_hybrid_only_at_the_top():
    hybrid = {"hybrid": {"queries": [{"match_all": {}}, neural("q")], "pagination_depth": 50}}
    parsed = hybrid_query(hybrid)
    assert parsed is not None and parsed.depth == 50 and len(parsed.queries) == 2
    with pytest.raises(BadRequest, match="top-level"):
        hybrid_query({"bool": {"must": [hybrid]}})
    with pytest.raises(BadRequest, match="queries"):
        hybrid_query({"hybrid": {"queries": []}})


def test_paging_reads_body_then_query_string():
    assert paging({}, {}) == (0, 10)
    assert paging({"size": 3}, {"from": "4"}) == (4, 3)
    with pytest.raises(BadRequest, match="from \\+ size"):
        paging({"from": 9_999, "size": 2}, {})


def test_markers_gate_the_parse():
    assert has_markers(json.dumps({"query": neural("x")}).encode())
    assert not has_markers(b'{"query":{"match":{"text":"neural networks"}}}')


# ---- Discover -----------------------------------------------------------------------------------


def test_per_mode_names():
    assert split_alias("scifact.knn") == ("scifact", "knn")
    assert split_alias("my.index.hybrid") == ("my.index", "hybrid")
    assert split_alias(alias_name("scifact", "rerank")) == ("scifact", "rerank")
    for target in ("scifact", "scifact.knn,other", "scifact.*", ".knn", "scifact.dense", None):
        assert split_alias(target) is None


def test_typed_text_of_discover_bodies():
    pill = {"match_phrase": {"title": "vitamin"}}
    assert typed_text(dql_body("vitamin d")["query"]) == ("vitamin d", None)
    assert typed_text(lucene_body("vitamin d")["query"]) == ("vitamin d", None)
    assert typed_text(dql_body("vitamin d", filters=[pill])["query"]) == (
        "vitamin d",
        {"bool": {"filter": [pill]}},
    )
    assert typed_text(empty_body()["query"]) is None
    # DQL `vitamin and title:d`: an `and` of the free text and a field query.
    field = {"bool": {"should": [{"match": {"title": "d"}}], "minimum_should_match": 1}}
    mm = {"multi_match": {"type": "best_fields", "query": "vitamin", "lenient": True}}
    anded = {"bool": {"filter": [{"bool": {"filter": [mm, field]}}]}}
    assert typed_text(anded) == ("vitamin", {"bool": {"filter": [field]}})
    # Free text under OR cannot be separated: the body passes through as it is.
    ored = {"bool": {"filter": [{"bool": {"should": [mm, field], "minimum_should_match": 1}}]}}
    assert typed_text(ored) is None
    negated = {"bool": {"must_not": [mm]}}
    assert typed_text(negated) is None


def test_knn_mode_sends_dotbridge_knn_body():
    body = dql_body("vitamin d", size=20)
    out = mode_body(
        "knn", "vitamin d", None, body, vector_field="vector", start=0, size=20, bm25=("x", None)
    )
    reference = knn_body(VEC, 20)
    rewritten = replace_neural(out, {"vitamin d": VEC}, "vector")
    assert rewritten["query"] == reference["query"]
    assert rewritten["sort"] == reference["sort"]
    assert out["highlight"] == body["highlight"] and out["version"] is True


# ---- headers, errors, model API -----------------------------------------------------------------


def test_caller_headers_carry_credentials_and_nothing_of_the_body():
    headers = {
        "Authorization": "Basic abc",
        "Cookie": "security_authentication=1",
        "X-Opaque-Id": "7",
        "Connection": "keep-alive",
        "Content-Length": "12",
        "Content-Encoding": "gzip",
        "Host": "gateway:9201",
    }
    kept = caller_headers(headers)
    assert kept == {
        "Authorization": "Basic abc",
        "Cookie": "security_authentication=1",
        "X-Opaque-Id": "7",
    }
    forwarded = forward_headers(headers)
    assert "Host" not in forwarded and "Connection" not in forwarded
    assert forwarded["Content-Encoding"] == "gzip" and forwarded["Authorization"] == "Basic abc"


def test_cache_identity_follows_credentials_not_request_ids():
    a = identity_key({"Authorization": "Basic a", "X-Opaque-Id": "1"})
    assert a == identity_key({"authorization": "Basic a", "X-Opaque-Id": "2"})
    assert a != identity_key({"Authorization": "Basic b"})
    assert a != identity_key({})


def test_errors_in_opensearch_shape():
    body = error_body(400, "Bad thing.")
    assert body["status"] == 400
    assert body["error"]["root_cause"][0] == {"type": body["error"]["type"], "reason": "Bad thing."}
    assert as_gateway_error(IndexMismatch("Index 'x' differs.")).status == 400
    assert as_gateway_error(ValueError("k must be positive")).reason == "K must be positive."
    assert as_gateway_error(RuntimeError("bug")) is None


def test_rerank_request_shape():
    assert rerank_request({"query": "q", "documents": ["a", 2], "top_n": 1}) == ("q", ["a", "2"], 1)
    assert rerank_request({"query": "q", "documents": ["a", "b"]})[2] == 2
    with pytest.raises(BadRequest, match="documents"):
        rerank_request({"query": "q", "documents": "a"})


def test_connectors_name_the_gateway_and_trust_it():
    requests = connector_requests("http://10.0.0.5:9201/", "tiny", "scifact")
    settings = requests[0][2]["persistent"]
    (pattern,) = settings["plugins.ml_commons.trusted_connector_endpoints_regex"]
    assert settings["plugins.ml_commons.connector.private_ip_enabled"] is True
    connectors = [body for method, path, body in requests if path.endswith("connectors/_create")]
    assert len(connectors) == 2
    for connector in connectors:
        assert connector["version"] and connector["credential"]
        (action,) = connector["actions"]
        assert re.match(pattern, action["url"]), action["url"]
    assert connectors[0]["actions"][0]["url"].endswith("/_dotbridge/models/tiny/_embed")
    assert "${parameters.input}" in connectors[0]["actions"][0]["request_body"]
    pipeline = next(body for _, path, body in requests if path.startswith("/_search/pipeline"))
    rerank = pipeline["response_processors"][0]["rerank"]
    assert rerank["context"]["document_fields"] == ["doc_id"]
    text = render(requests)
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        method, _ = lines[0].split(" ", 1)
        assert method in ("GET", "PUT", "POST")
        json.loads("\n".join(lines[1:]))


def test_ndjson_items():
    raw = b'{"index":"a"}\n{"size":1}\n{}\n{"query":{"match_all":{}}}\n'
    items = parse_ndjson(raw)
    assert [(h, b) for h, b, _ in items] == [
        ({"index": "a"}, {"size": 1}),
        ({}, {"query": {"match_all": {}}}),
    ]
    assert parse_ndjson(b'{"index":"a"}\n') is None
    assert parse_ndjson(b"{not json}\n{}\n") is None


# ---- micro-batching ------------------------------------------------------------------------------


def test_concurrent_requests_share_batches_and_get_their_own_rows(tiny_encoder):
    texts = [f"query number {i} about vitamin {i % 7}" for i in range(60)]
    reference = np.stack([tiny_encoder.encode_queries([t])[0] for t in texts])
    batcher = MicroBatcher({"query": tiny_encoder.encode_queries}, max_batch=64)

    async def many() -> list[np.ndarray]:
        # Each request asks for its text and a text shared with every other request.
        return await asyncio.gather(*(batcher.encode([t, texts[0]]) for t in texts))

    try:
        results = asyncio.run(many())
    finally:
        batcher.close()
    for i, rows in enumerate(results):
        np.testing.assert_allclose(rows[0], reference[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rows[1], reference[0], rtol=1e-4, atol=1e-5)
    stats = batcher.stats.as_dict()
    assert stats["requests"] == len(texts)
    assert stats["batches"] < len(texts)  # requests were batched together
    assert stats["largest_batch"] > 1
    # The text every request shares is encoded once per batch, not once per request.
    assert stats["texts"] <= len(texts) + stats["batches"] - 1


def test_a_failing_encode_reaches_every_waiting_request():
    def broken(texts):
        raise RuntimeError("device lost")

    batcher = MicroBatcher({"query": broken})

    async def two():
        return await asyncio.gather(
            batcher.encode(["a"]), batcher.encode(["b"]), return_exceptions=True
        )

    try:
        results = asyncio.run(two())
    finally:
        batcher.close()
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_batch_that_outlives_its_event_loop_does_not_kill_the_worker():
    """A server stopping while the model runs closes the request's loop; the worker drops that
    result and goes on serving the next loop's requests."""
    started, release = threading.Event(), threading.Event()

    def slow(texts):
        started.set()
        release.wait(10)
        return np.ones((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": slow}, timeout=20)
    try:
        loop = asyncio.new_event_loop()
        loop.create_task(batcher.encode(["left behind"]))
        loop.run_until_complete(asyncio.sleep(0))  # the job is queued and picked up
        assert started.wait(10)
        loop.close()  # the task is never awaited again: its loop is gone
        release.set()
        rows = asyncio.run(batcher.encode(["next"]))
        assert rows.shape == (1, 2)
        assert batcher._thread.is_alive()
    finally:
        release.set()
        batcher.close()


def test_print_connectors_needs_no_cluster_and_no_model_load():
    from click.testing import CliRunner

    from bridge.cli import main

    args = ["serve", "--print-connectors", "--model", "/models/tiny", "--index", "scifact"]
    args += ["--public-url", "http://10.0.0.5:9201", "--url", "http://127.0.0.1:1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "http://10.0.0.5:9201/_dotbridge/models/tiny/_embed" in result.output
    assert "http://10.0.0.5:9201/_dotbridge/rerank/scifact" in result.output
    assert "dotbridge aliases scifact" in result.output


def test_the_gateways_json_writes_the_same_numbers_as_the_standard_library():
    from bridge.gateway import jsoncodec

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((64, 384)) * 10.0 ** rng.integers(-6, 3, (64, 1))
    vectors = vectors.astype(np.float32)
    answer = vectors.tolist()  # what the model API answers
    written = jsoncodec.dumps(answer)
    assert json.loads(written) == json.loads(json.dumps(answer))  # every double the same
    np.testing.assert_array_equal(np.asarray(json.loads(written), dtype=np.float32), vectors)
    # What orjson refuses is written by the standard library, exactly: an integer past 64
    # bits, and numpy values as the doubles they are (not a shorter float32 text).
    odd = {"n": 2**70, "score": np.float32(0.1), "row": vectors[0]}
    assert json.loads(jsoncodec.dumps(odd)) == {
        "n": 2**70,
        "score": float(np.float32(0.1)),
        "row": vectors[0].tolist(),
    }
