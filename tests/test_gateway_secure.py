"""The gateway in front of a secured node (TLS, users, roles): a caller gets through dotbridge
exactly the rights the cluster gives that caller, never the gateway's own."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.client import connect
from bridge.config import ModelSettings
from bridge.search import make_searcher
from ingest.pipeline import ingest_corpus
from tests.gateway_fixtures import SCIFACT, answer, request, running_gateway

pytestmark = pytest.mark.integration


def basic(settings) -> dict[str, str]:
    token = base64.b64encode(f"{settings.user}:{settings.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def secured_index(secure_settings, tiny_model_dir, tmp_path_factory) -> Iterator[str]:
    client = connect(secure_settings)
    name = "test-gateway-secure"
    client.indices.delete(index=name, ignore_unavailable=True)
    encoder = ModelSettings(model=str(tiny_model_dir), pooling="mean", device="cpu").load()
    stats = ingest_corpus(
        SCIFACT / "corpus.jsonl",
        client=client,
        index=name,
        encoder=encoder,
        limit=120,
        rejects=tmp_path_factory.mktemp("rejects") / "r.jsonl",
        progress=False,
    )
    assert stats.indexed == 120
    yield name
    client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def secure_gateway(secure_settings, tiny_model_dir, tmp_path_factory) -> Iterator[str]:
    """A gateway whose own configured user is the cluster's admin."""
    log = tmp_path_factory.mktemp("secure-gateway") / "serve.log"
    ca = str(Path(secure_settings.ca_certs))
    with running_gateway(secure_settings, tiny_model_dir, log, "--ca-certs", ca) as url:
        yield url
    assert secure_settings.password not in log.read_text()


def neural(text: str, k: int = 5) -> dict:
    return {"size": k, "query": {"neural": {"vector": {"query_text": text, "k": k}}}}


def test_an_anonymous_caller_gets_the_clusters_401_not_the_gateways_rights(
    secure_gateway, secured_index
):
    for method, path, body in (
        ("GET", f"/{secured_index}/_search", None),
        ("POST", f"/{secured_index}/_search", neural("vitamin d")),
        ("PUT", f"/{secured_index}/_doc/anon", {"text": "x"}),
        ("GET", "/_cat/indices", None),
    ):
        resp = request(secure_gateway, method, path, body)
        assert resp.status == 401, (method, path, resp.data[:200])


def test_a_reader_searches_with_the_model_and_may_not_write(
    secure_gateway, secured_index, reader_settings, tiny_model_dir
):
    headers = basic(reader_settings)
    resp = request(
        secure_gateway, "POST", f"/{secured_index}/_search", neural("vitamin d"), headers=headers
    )
    assert resp.status == 200, resp.data[:300]
    got = [h["_id"] for h in answer(resp)["hits"]["hits"]]
    # The same ranking as `dotbridge search --mode knn` run as the reader, directly.
    direct = connect(reader_settings)
    encoder = ModelSettings(model=str(tiny_model_dir), pooling="mean", device="cpu").load()
    expected = make_searcher("knn", direct, secured_index, encoder).search("vitamin d", k=5)
    assert got == [h.doc_id for h in expected]
    rerank = {
        "size": 5,
        "query": {"match": {"text": "vitamin d"}},
        "ext": {"rerank": {"query_context": {"query_text": "vitamin d"}}},
    }
    resp = request(secure_gateway, "POST", f"/{secured_index}/_search", rerank, headers=headers)
    assert resp.status == 200, resp.data[:300]
    write = request(
        secure_gateway, "PUT", f"/{secured_index}/_doc/by-reader", {"text": "x"}, headers=headers
    )
    assert write.status == 403
    assert not direct.exists(index=secured_index, id="by-reader")


def test_wrong_credentials_are_refused_by_the_cluster(
    secure_gateway, secured_index, reader_settings
):
    headers = basic(reader_settings.__class__(url="x", user="reader", password="wrong"))
    resp = request(
        secure_gateway, "POST", f"/{secured_index}/_search", neural("cells"), headers=headers
    )
    assert resp.status == 401
