"""The Dev Tools queries printed in docs/dashboards.md, sent as written through a real gateway,
rank as `dotbridge search` does in the same mode: the documented queries and the CLI agree."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.client import connect
from bridge.encoder import Encoder
from bridge.search import make_searcher
from tests.gateway_fixtures import answer, dotbridge_index, request

pytestmark = pytest.mark.integration

PAGE = Path(__file__).resolve().parents[1] / "docs" / "dashboards.md"
N_DOCS = 600


def documented_queries() -> dict[str, tuple[str, dict]]:
    """{mode: (index, body)} for each `# mode: ...` comment followed by `GET INDEX/_search`."""
    found: dict[str, tuple[str, dict]] = {}
    for block in re.findall(r"^```\w*\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M):
        for part in re.split(r"\n(?=# )", block.strip()):
            match = re.match(r"# (\w+):[^\n]*\nGET (\S+)/_search\n(.*)", part, flags=re.S)
            if match:
                mode, index, body = match.groups()
                found[mode] = (index, json.loads(body))
    return found


def test_the_page_documents_each_mode():
    assert set(documented_queries()) == {"knn", "rerank", "hybrid"}


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> Encoder:
    return Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")


@pytest.fixture(scope="module")
def client(opensearch_settings):
    return connect(opensearch_settings)


@pytest.fixture(scope="module")
def index(client, encoder) -> Iterator[str]:
    yield from dotbridge_index(client, encoder, N_DOCS)


@pytest.mark.parametrize("mode", ["knn", "rerank", "hybrid"])
def test_documented_query_ranks_as_the_search_command(mode, gateway_url, client, encoder, index):
    documented, body = documented_queries()[mode]
    text = re.search(r'"query_text": "([^"]+)"', json.dumps(body)).group(1)
    size = body["size"]
    expected = make_searcher(mode, client, index, encoder).search(text, size)
    resp = request(gateway_url, "POST", f"/{index}/_search", body)
    got = answer(resp)
    assert resp.status == 200, got
    assert documented == "scifact"
    assert [h["_id"] for h in got["hits"]["hits"]] == [h.doc_id for h in expected]
