"""The gateway in front of a secured node (TLS, users, roles): a caller gets through dotbridge
exactly the rights the cluster gives that caller, never the gateway's own."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# ---- what the cluster refuses stays refused through every path of the gateway -----------------


SECURITY_API = "/_plugins/_security/api"
MADE: list[tuple[Any, str]] = []  # (admin client, user) made by the running test


@pytest.fixture(autouse=True)
def _users_removed_afterwards():
    """The session's secured node is shared: users a test makes (and their roles) go with it."""
    yield
    while MADE:
        admin, user = MADE.pop()
        for path in (f"rolesmapping/role_{user}", f"internalusers/{user}", f"roles/role_{user}"):
            with contextlib.suppress(Exception):
                admin.transport.perform_request("DELETE", f"{SECURITY_API}/{path}")


def make_user(admin, user: str, password: str, actions: list[str], index: str) -> dict[str, str]:
    """A user of the secured node with only `actions` on `index` (the security REST API),
    removed after the test."""
    role = f"role_{user}"
    api = SECURITY_API
    MADE.append((admin, user))
    admin.transport.perform_request(
        "PUT",
        f"{api}/roles/{role}",
        body={
            "cluster_permissions": ["indices:data/read/msearch"],
            "index_permissions": [{"index_patterns": [index], "allowed_actions": actions}],
        },
    )
    admin.transport.perform_request(
        "PUT", f"{api}/internalusers/{user}", body={"password": password}
    )
    admin.transport.perform_request("PUT", f"{api}/rolesmapping/{role}", body={"users": [user]})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_a_user_who_may_read_the_mapping_but_not_search_gets_403_everywhere(
    secure_gateway, secured_index, secure_settings
):
    admin = connect(secure_settings)
    headers = make_user(
        admin,
        "mapper",
        "Xq7!vLp2#Rt9wZk4",
        ["indices:admin/get", "indices:admin/mappings/get", "indices:monitor/settings/get"],
        secured_index,
    )
    mapping = request(secure_gateway, "GET", f"/{secured_index}/_mapping", headers=headers)
    assert mapping.status == 200  # the control: the mapping is readable
    rerank = {
        "query": {"match": {"text": "vitamin d"}},
        "ext": {"rerank": {"query_context": {"query_text": "vitamin d"}}},
    }
    hybrid = {
        "query": {
            "hybrid": {
                "queries": [
                    {"match": {"text": "vitamin d"}},
                    {"neural": {"vector": {"query_text": "vitamin d", "k": 5}}},
                ]
            }
        }
    }
    for name, body in (("neural", neural("vitamin d")), ("rerank", rerank), ("hybrid", hybrid)):
        resp = request(secure_gateway, "POST", f"/{secured_index}/_search", body, headers=headers)
        assert resp.status == 403, (name, resp.data[:300])
        assert answer(resp)["error"]["type"] == "security_exception", name
    lines = [{"index": secured_index}, neural("cells"), {"index": secured_index}, rerank]
    resp = request(secure_gateway, "POST", "/_msearch", lines, ndjson=True, headers=headers)
    assert resp.status == 200
    assert [item["status"] for item in answer(resp)["responses"]] == [403, 403]
    ranked = request(
        secure_gateway,
        "POST",
        f"/_dotbridge/rerank/{secured_index}",
        {"query": "vitamin d", "documents": ["1", "2"]},
        headers=headers,
    )
    assert ranked.status == 403, ranked.data[:300]


def test_msearch_items_naming_an_index_the_caller_may_not_search(
    secure_gateway, secured_index, secure_settings
):
    admin = connect(secure_settings)
    other = "test-gateway-secure-other"
    admin.indices.create(index=other, ignore=400)
    headers = make_user(
        admin,
        "onlyone",
        "Bn3@hTr8%Yw2qLm5",
        ["read", "indices:admin/get", "indices:admin/mappings/get", "indices:monitor/settings/get"],
        secured_index,
    )
    try:
        lines = [
            {"index": secured_index},
            neural("cells"),
            {"index": other},
            {"query": {"neural": {"vector": {"query_text": "cells", "k": 5}}}},
        ]
        resp = request(secure_gateway, "POST", "/_msearch", lines, ndjson=True, headers=headers)
        assert resp.status == 200, resp.data[:300]
        first, second = answer(resp)["responses"]
        assert first["status"] == 200 and first["hits"]["hits"]
        assert second["status"] == 403, second
    finally:
        admin.indices.delete(index=other, ignore_unavailable=True)


def test_the_model_api_and_the_description_need_the_cluster_to_know_the_caller(
    secure_gateway, reader_settings
):
    for method, path, body in (
        ("POST", "/_dotbridge/models/tiny/_embed", {"input": ["x"]}),
        ("GET", "/_dotbridge", None),
    ):
        resp = request(secure_gateway, method, path, body)
        assert resp.status == 401, (path, resp.data[:300])
        assert b"https://" not in resp.data and b"127.0.0.1" not in resp.data
    headers = basic(reader_settings)
    described = answer(request(secure_gateway, "GET", "/_dotbridge", headers=headers))
    assert described["cluster"].startswith("https://")
    (model,) = described["models"]
    path = f"/_dotbridge/models/{model['name']}/_embed"
    resp = request(secure_gateway, "POST", path, {"input": ["vitamin d"]}, headers=headers)
    assert resp.status == 200 and len(answer(resp)) == 1
    wrong = basic(reader_settings.__class__(url="x", user="reader", password="wrong"))
    assert request(secure_gateway, "POST", path, {"input": ["x"]}, headers=wrong).status == 401


def test_the_meta_cache_is_kept_per_caller(
    secured_index, secure_settings, tiny_model_dir, tmp_path
):
    """A user who may search but not read the mapping gets the cluster's 403 from the gateway's
    mapping read, even right after the admin's identical search filled the cache: a cache keyed
    without the caller would have let it through (200)."""
    admin = connect(secure_settings)
    headers = make_user(
        admin, "searcher", "Kd9#pWz4!Hs7vNc1", ["indices:data/read/search*"], secured_index
    )
    log = tmp_path / "serve.log"
    ca = str(Path(secure_settings.ca_certs))
    with running_gateway(
        secure_settings, tiny_model_dir, log, "--ca-certs", ca, "--meta-ttl", "300"
    ) as url:
        plain = {"query": {"match": {"text": "vitamin"}}}
        control = request(url, "POST", f"/{secured_index}/_search", plain, headers=headers)
        assert control.status == 200  # the control: this user may search
        as_admin = request(
            url,
            "POST",
            f"/{secured_index}/_search",
            neural("cells"),
            headers=basic(secure_settings),
        )
        assert as_admin.status == 200
        resp = request(url, "POST", f"/{secured_index}/_search", neural("cells"), headers=headers)
        assert resp.status == 403, resp.data[:300]
