"""The gateway under real concurrent load: many clients at once, and encoding beside
pass-through traffic (the latency numbers come from benchmarks/bench_gateway.py, not here)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.client import connect
from bridge.encoder import Encoder
from tests.gateway_fixtures import SCIFACT, answer, dotbridge_index, read_jsonl, request

pytestmark = pytest.mark.integration

CLIENTS = 20
SECONDS = 30.0


@pytest.fixture(scope="module")
def index(opensearch_settings, tiny_model_dir) -> Iterator[str]:
    encoder = Encoder(tiny_model_dir, pooling="mean", passage_max_length=64, device="cpu")
    yield from dotbridge_index(connect(opensearch_settings), encoder, 300)


def encoder_stats(gateway_url: str) -> dict:
    (model,) = answer(request(gateway_url, "GET", "/_dotbridge"))["models"]
    return model["encoder"]


def test_twenty_clients_for_thirty_seconds_without_an_error(gateway_url, index):
    queries = [row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl", 50)]
    doc_ids = [row["_id"] for row in read_jsonl(SCIFACT / "corpus.jsonl", 300)]
    before = encoder_stats(gateway_url)
    done: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def one(kind: str, n: int) -> tuple[int, dict | None]:
        query = queries[n % len(queries)]
        if kind == "get":
            resp = request(gateway_url, "GET", f"/{index}/_doc/{doc_ids[n % len(doc_ids)]}")
        elif kind == "bm25":
            body = {"size": 10, "query": {"match": {"text": query}}}
            resp = request(gateway_url, "POST", f"/{index}/_search", body)
        elif kind == "neural":
            body = {"size": 10, "query": {"neural": {"vector": {"query_text": query, "k": 10}}}}
            resp = request(gateway_url, "POST", f"/{index}/_search", body)
        else:  # re-ranked, in stages
            body = {
                "size": 5,
                "query": {"match": {"text": query}},
                "ext": {"rerank": {"query_context": {"query_text": query}}},
            }
            resp = request(gateway_url, "POST", f"/{index}/_search", body)
        return resp.status, answer(resp)

    def client(number: int) -> None:
        kinds = ("get", "neural", "bm25", "neural", "rerank")
        n = number
        while time.monotonic() < deadline:
            kind = kinds[n % len(kinds)]
            try:
                status, data = one(kind, n)
                ok = status == 200 and (kind == "get" or data["hits"]["hits"])
                problem = None if ok else f"{kind}: {status} {str(data)[:200]}"
            except Exception as exc:  # a dropped connection, a timeout: an error all the same
                problem = f"{kind}: {type(exc).__name__}: {exc}"
            with lock:
                done[kind] += 1
                if problem:
                    errors.append(problem)
            n += CLIENTS

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    after = encoder_stats(gateway_url)
    assert errors == [], f"{len(errors)} errors of {sum(done.values())}: {errors[:5]}"
    assert all(done[kind] > 0 for kind in ("get", "bm25", "neural", "rerank")), done
    # Neural and rerank requests overlapped: some shared one forward pass of the encoder.
    assert after["requests"] - before["requests"] >= done["neural"] + done["rerank"]
    assert after["batches"] - before["batches"] < after["requests"] - before["requests"]
    assert after["largest_batch"] > 1


def test_encoding_never_holds_up_pass_through(gateway_url, index):
    """Embedding requests keep the encoder busy; pass-through requests sent meanwhile are all
    answered before the last of them is.

    How long the encoder stays busy depends on the machine, so the load grows (1, 4, then 16
    embedding requests of 3,000 passages each, queued on the one encoder) until it outlasts
    the 30 pass-through requests. A gateway whose encoding held up pass-through traffic would
    answer them only after the encoder, at every load.
    """
    (model,) = answer(request(gateway_url, "GET", "/_dotbridge"))["models"]
    passages = [
        f"{row['title']} {row['text']}" for row in read_jsonl(SCIFACT / "corpus.jsonl", 300)
    ]
    texts = passages * 10  # 3,000 passages of up to 512 tokens per request

    def embed() -> tuple[int, float]:
        resp = request(
            gateway_url, "POST", f"/_dotbridge/models/{model['name']}/_embed", {"input": texts}
        )
        return resp.status, time.monotonic()

    outcomes = []
    for requests_at_once in (1, 4, 16):
        with ThreadPoolExecutor(requests_at_once) as pool:
            futures = [pool.submit(embed) for _ in range(requests_at_once)]
            time.sleep(0.5)  # the requests reach the gateway and its encoder
            statuses = [request(gateway_url, "GET", f"/{index}/_count").status for _ in range(30)]
            passed_through = time.monotonic()
            embedded = [f.result() for f in futures]
        assert statuses == [200] * 30
        # Past --max-queue the gateway refuses at once (429) rather than queue without end.
        done = [(status, at) for status, at in embedded if status == 200]
        assert done and {status for status, _ in embedded} <= {200, 429}, embedded
        last_embedding = max(at for _, at in done)
        outcomes.append((requests_at_once, passed_through < last_embedding))
        if passed_through < last_embedding:
            break
    assert outcomes[-1][1], (
        f"pass-through answered only after the encoder, at every load: {outcomes}"
    )
