"""The query-vector cache through a real gateway and a real OpenSearch node: a repeated neural
text is answered from the cache (no encode) with the same hits as the first time and as the
k-NN query on the vector the encoder computes in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.client import connect
from bridge.encoder import Encoder
from tests.gateway_fixtures import answer, dotbridge_index, request, running_gateway

pytestmark = pytest.mark.integration

TEXT = "vitamin d deficiency and bone density"


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def index(opensearch_settings, encoder) -> Iterator[str]:
    yield from dotbridge_index(connect(opensearch_settings), encoder, 200)


def model_stats(url: str) -> dict:
    (model,) = answer(request(url, "GET", "/_dotbridge"))["models"]
    return model


def neural(url: str, index: str, text: str) -> dict:
    body = {"size": 10, "query": {"neural": {"vector": {"query_text": text, "k": 10}}}}
    resp = request(url, "POST", f"/{index}/_search", body)
    assert resp.status == 200, resp.data
    return answer(resp)


def hits(resp: dict) -> list[tuple[str, float]]:
    return [(h["_id"], h["_score"]) for h in resp["hits"]["hits"]]


def test_a_repeated_text_is_not_encoded_again(
    opensearch_settings, tiny_model_dir, encoder, index, tmp_path
):
    flags = ("--query-cache-size", "2", "--query-cache-ttl", "300")
    with running_gateway(
        opensearch_settings, tiny_model_dir, tmp_path / "serve.log", *flags
    ) as url:
        before = model_stats(url)
        cache = before["query_cache"]
        assert (cache["size"], cache["ttl_s"], cache["entries"]) == (2, 300.0, 0)
        first = neural(url, index, TEXT)
        after_first = model_stats(url)
        again = neural(url, index, TEXT)
        after_again = model_stats(url)
        # the reference: OpenSearch's own k-NN query on the vector encoded here
        vector = encoder.encode_queries([TEXT])[0].tolist()
        knn = {"size": 10, "query": {"knn": {"vector": {"vector": vector, "k": 10}}}}
        plain = connect(opensearch_settings).search(index=index, body=knn)
        # two other texts push the first one out (size 2): it is encoded again
        neural(url, index, "malaria")
        neural(url, index, "insulin")
        neural(url, index, TEXT)
        evicted = model_stats(url)

    assert [i for i, _ in hits(again)] == [i for i, _ in hits(plain)]
    assert hits(again) == hits(first)
    cache0, cache1, cache2 = (s["query_cache"] for s in (before, after_first, after_again))
    assert (cache1["hits"] - cache0["hits"], cache1["misses"] - cache0["misses"]) == (0, 1)
    assert (cache2["hits"] - cache1["hits"], cache2["misses"] - cache1["misses"]) == (1, 0)
    assert after_again["encoder"]["texts"] == after_first["encoder"]["texts"]
    assert evicted["query_cache"]["evictions"] >= 2 and evicted["query_cache"]["entries"] == 2
    assert evicted["encoder"]["texts"] == after_first["encoder"]["texts"] + 3


def test_no_cache_encodes_every_time(opensearch_settings, tiny_model_dir, index, tmp_path):
    flags = ("--query-cache-size", "0")
    with running_gateway(
        opensearch_settings, tiny_model_dir, tmp_path / "serve.log", *flags
    ) as url:
        first = neural(url, index, TEXT)
        again = neural(url, index, TEXT)
        stats = model_stats(url)
    assert hits(first) == hits(again)
    assert stats["encoder"]["texts"] == 2 and stats["query_cache"]["hits"] == 0
