"""What Discover shows through the per-mode names: no vector in `_source` unless the request
names it, and `_score` as `dotbridge search --mode MODE` reports it (checked against the search
command run in the same test, on a real OpenSearch node through a real gateway)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bridge.backends.opensearch import OpenSearchBackend
from bridge.cli import main
from bridge.client import connect
from bridge.encoder import Encoder
from bridge.gateway.presentation import knn_similarities, without_vector
from bridge.search.scores import from_similarity
from mappings import Similarity
from tests import discover_bodies
from tests.gateway_fixtures import answer, dotbridge_index, request

TEXT = "vitamin d deficiency and bone health"

# ---- pure functions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        (None, {"excludes": ["vector"]}),
        (True, {"excludes": ["vector"]}),
        ({"excludes": []}, {"excludes": ["vector"]}),
        ({"excludes": "x"}, {"excludes": ["x", "vector"]}),
        ({"includes": ["title"]}, {"includes": ["title"], "excludes": ["vector"]}),
        (["title", "text"], {"includes": ["title", "text"], "excludes": ["vector"]}),
        ("title", {"includes": ["title"], "excludes": ["vector"]}),
        # named, or no _source at all: as asked
        (False, False),
        ("vector", "vector"),
        (["title", "vector"], ["title", "vector"]),
        ({"includes": ["vector"]}, {"includes": ["vector"]}),
    ],
)
def test_the_vector_leaves_source_unless_named(source, expected):
    body = {"size": 3} if source is None else {"size": 3, "_source": source}
    assert without_vector(body, "vector") == {"size": 3, "_source": expected}


def test_knn_scores_become_the_models_similarity():
    backend = OpenSearchBackend()
    sims = [0.83, 0.5, -0.2]
    answer_ = {
        "hits": {
            "max_score": from_similarity(sims[0], "cosine"),
            "hits": [
                {"_id": str(i), "_score": from_similarity(s, "cosine")} for i, s in enumerate(sims)
            ]
            + [{"_id": "sorted", "_score": None}],
        }
    }
    out = knn_similarities(answer_, Similarity.COSINE, backend)
    got = [h["_score"] for h in out["hits"]["hits"]]
    assert got[:3] == pytest.approx(sims, abs=1e-6) and got[3] is None
    assert out["hits"]["max_score"] == pytest.approx(sims[0], abs=1e-6)
    assert answer_["hits"]["hits"][0]["_score"] != got[0]  # the caller's answer is not changed


# ---- through the gateway ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def index(opensearch_settings, encoder) -> Iterator[str]:
    yield from dotbridge_index(connect(opensearch_settings), encoder, 300)


def search_command(settings, model_dir, index: str, mode: str, k: int) -> list[tuple[str, float]]:
    args = ["search", TEXT, "--index", index, "--mode", mode, "-k", str(k), "--json"]
    args += ["--model", str(model_dir), "--pooling", "mean", "--device", "cpu"]
    args += ["--url", settings.url]
    if mode == "rerank":
        args += ["--candidates", "100"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    return [(row["doc_id"], row["score"]) for row in rows]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["knn", "rerank", "hybrid", "bm25"])
def test_discover_rows_carry_no_vector_and_the_modes_score(
    gateway_url, opensearch_settings, tiny_model_dir, index, mode
):
    expected = search_command(opensearch_settings, tiny_model_dir, index, mode, 20)
    for body in (
        discover_bodies.dql_body(TEXT, size=20),
        discover_bodies.lucene_body(TEXT, size=20),
    ):
        resp = request(
            gateway_url, "POST", f"/{index}.{mode}/_search{discover_bodies.PARAMS}", body
        )
        got = answer(resp)
        assert resp.status == 200, got
        hits = got["hits"]["hits"]
        assert [h["_id"] for h in hits] == [doc for doc, _ in expected]
        assert [h["_score"] for h in hits] == pytest.approx([s for _, s in expected], abs=1e-4)
        assert got["hits"]["max_score"] == pytest.approx(expected[0][1], abs=1e-4)
        assert all("vector" not in h["_source"] and "text" in h["_source"] for h in hits)
    # a request that names the vector field gets it
    named = {**discover_bodies.dql_body(TEXT, size=3), "_source": ["doc_id", "vector"]}
    rows = answer(request(gateway_url, "POST", f"/{index}.{mode}/_search", named))["hits"]["hits"]
    assert rows and all(len(h["_source"]["vector"]) > 8 for h in rows)


@pytest.mark.integration
def test_explicit_neural_answers_as_the_neural_plugin(gateway_url, opensearch_settings, index):
    """neural-search's own syntax keeps the plugin's answer: `_source` as stored, and the
    engine's k-NN score (the same the cluster gives for the k-NN query of that vector)."""
    body = {"size": 5, "query": {"neural": {"vector": {"query_text": TEXT, "k": 5}}}}
    hits = answer(request(gateway_url, "POST", f"/{index}/_search", body))["hits"]["hits"]
    assert all("vector" in h["_source"] for h in hits)
    via_alias = answer(
        request(
            gateway_url, "POST", f"/{index}.knn/_search", discover_bodies.dql_body(TEXT, size=5)
        )
    )["hits"]["hits"]
    assert [h["_id"] for h in hits] == [h["_id"] for h in via_alias]
    for plain, shown in zip(hits, via_alias, strict=True):
        assert plain["_score"] == pytest.approx(from_similarity(shown["_score"], "dot"), abs=1e-4)
