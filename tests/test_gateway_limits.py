"""The gateway's limits, identity headers and answer shaping as pure functions (no server):
each compared with a plain reference computed in the test."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from bridge.gateway.batcher import MicroBatcher
from bridge.gateway.errors import BadRequest, Overloaded, TooLarge
from bridge.gateway.identity import Identity, networks
from bridge.gateway.limits import Limits, check_texts, clipped, count_neural, inflate, loads
from bridge.gateway.shaping import filter_path, render


def run(coro):
    return asyncio.run(coro)


def test_inflation_matches_zlib_and_stops_at_the_cap():
    body = json.dumps({"query": {"match": {"text": "cells " * 1000}}}).encode()
    limits = Limits()
    assert run(inflate(gzip.compress(body), "gzip", limits)) == body
    assert run(inflate(zlib.compress(body), "deflate", limits)) == body
    assert run(inflate(body, None, limits)) == body
    assert run(inflate(body, "br", limits)) is None  # unknown: passes through as sent
    assert run(inflate(gzip.compress(body)[:-10], "gzip", limits)) is None  # broken stream
    bomb = gzip.compress(bytes(50 << 20))  # 50 MB of zeros in about 50 kB
    with pytest.raises(TooLarge) as caught:
        run(inflate(bomb, "gzip", limits))
    assert caught.value.status == 413 and "--max-inflated" in caught.value.reason
    small = Limits(max_inflated=1 << 30, max_ratio=10)  # the ratio, past the first MiB
    with pytest.raises(TooLarge):
        run(inflate(bomb, "gzip", small))


def test_json_depth_is_refused_in_one_sentence_at_any_depth():
    limits = Limits(max_depth=10)
    assert loads(b"[" * 10 + b"]" * 10, limits) == json.loads(b"[" * 10 + b"]" * 10)
    for depth in (11, 5_000, 100_000):
        with pytest.raises(BadRequest) as caught:
            loads(b'{"a":' * depth + b"1" + b"}" * depth, limits)
        assert caught.value.status == 400 and caught.value.reason.count(". ") == 0


def test_neural_clauses_are_counted_like_a_plain_walk():
    clause = {"neural": {"vector": {"query_text": "x", "k": 3}}}
    body = {"query": {"bool": {"should": [clause] * 7, "must": [{"match": {"neural": "x"}}]}}}
    reference = json.dumps(body).count('"query_text"')
    assert count_neural(body) == reference == 7


def test_model_api_texts_are_bounded_and_clipped_to_the_window():
    limits = Limits(max_texts=3, max_chars=100)
    check_texts(["a", "b", "c"], limits)
    with pytest.raises(TooLarge):
        check_texts(["a"] * 4, limits)
    with pytest.raises(TooLarge):
        check_texts(["a" * 101], limits)
    texts = ["short", "x" * 10_000]
    assert clipped(texts, 8) == ["short", "x" * 128]


def test_the_encoder_queue_is_bounded_per_kind_and_queries_go_first():
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(texts):
        started.set()
        release.wait(10)
        order.extend(texts)
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": slow, "passage": slow}, max_batch=4, max_queue=4)

    async def scenario():
        first = asyncio.ensure_future(batcher.encode(["p0"], "passage"))
        await asyncio.to_thread(started.wait, 10)  # the worker is busy with p0
        waiting = [asyncio.ensure_future(batcher.encode([f"p{i}"], "passage")) for i in (1, 2)]
        query = asyncio.ensure_future(batcher.encode(["q"], "query"))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as caught:
            await batcher.encode(["p3", "p4", "p5"], "passage")  # 2 + 3 > 4
        assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "1"
        release.set()
        await asyncio.gather(first, query, *waiting)

    try:
        run(scenario())
    finally:
        release.set()
        batcher.close()
    assert order[0] == "p0" and order[1] == "q"  # the query did not wait behind the passages


def test_an_encode_past_its_timeout_is_refused_and_dropped():
    release = threading.Event()
    seen: list[str] = []

    def slow(texts):
        seen.extend(texts)
        release.wait(10)
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": slow}, timeout=0.2)

    async def scenario():
        busy = asyncio.ensure_future(batcher.encode(["a"]))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await batcher.encode(["b"])  # waits behind "a", past its timeout
        release.set()
        with pytest.raises(Overloaded):
            await busy

    try:
        run(scenario())
    finally:
        release.set()
        batcher.close()
    assert seen == ["a"]  # "b" was given up before the worker reached it


def test_a_query_waits_for_one_chunk_of_a_passage_flood_not_all_of_it():
    calls: list[str] = []
    first_chunk, release = threading.Event(), threading.Event()

    def passages(texts):
        calls.append(f"passages {texts[0]}..{texts[-1]}")
        first_chunk.set()
        release.wait(10)
        return np.asarray([[float(t[1:]), 1.0] for t in texts], dtype=np.float32)

    def queries(texts):
        calls.append(f"query {texts[0]}")
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": queries, "passage": passages}, max_batch=64, chunk=4)
    flood_texts = [f"p{i}" for i in range(12)]

    async def scenario():
        flood = asyncio.ensure_future(batcher.encode(flood_texts, "passage"))
        await asyncio.to_thread(first_chunk.wait, 10)  # the worker is inside the first chunk
        query = asyncio.ensure_future(batcher.encode(["q"], "query"))
        while batcher.queued["query"] == 0:
            await asyncio.sleep(0.01)
        release.set()
        return await flood, await query

    try:
        rows, _ = run(scenario())
    finally:
        release.set()
        batcher.close()
    # The query ran right after the chunk in progress, before the rest of the flood.
    assert calls == ["passages p0..p3", "query q", "passages p4..p7", "passages p8..p11"]
    assert rows[:, 0].tolist() == list(range(12))  # the chunks' rows, in the request's order


def test_a_passage_flood_whose_caller_left_stops_after_the_chunk_in_progress():
    calls: list[int] = []
    busy, release = threading.Event(), threading.Event()

    def passages(texts):
        calls.append(len(texts))
        busy.set()
        release.wait(10)
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": passages, "passage": passages}, chunk=4, timeout=0.2)

    async def scenario():
        with pytest.raises(Overloaded):  # its caller gets the timeout and leaves
            await batcher.encode([f"p{i}" for i in range(40)], "passage")
        assert busy.is_set()
        release.set()
        return await batcher.encode(["q"], "query")  # the worker is free again

    try:
        run(scenario())
    finally:
        release.set()
        batcher.close()
    assert calls == [4, 1]  # one chunk of the 40 passages, then the query: 36 never encoded


def thread_nice_values() -> dict[int, int]:
    """Each thread of this process and its nice value, as the kernel reports it."""
    values = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        values[int(tid)] = int(stat[stat.rindex(")") + 2 :].split()[16])
    return values


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_the_encoder_and_the_torch_threads_it_starts_yield_the_cpu():
    import torch

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int] = {}

    def encode(texts):
        seen["worker"] = threading.get_native_id()
        a = torch.randn(256, 256)
        for _ in range(3):  # parallel regions: torch's OpenMP threads start from this thread
            a = torch.tanh(a @ a)
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = MicroBatcher({"query": encode}, nice=7)
    try:
        run(batcher.encode(["a"]))
        niced = [tid for tid, nice in thread_nice_values().items() if nice == min(19, base + 7)]
    finally:
        batcher.close()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the loop's
    assert seen["worker"] in niced
    # The worker and the helper threads torch ran its parallel regions on.
    assert len(niced) >= torch.get_num_threads()


def request_with(headers: dict[str, str], peer: str):
    req = make_mocked_request("GET", "/", headers=CIMultiDict(headers))
    return req.clone(remote=peer)


def test_identity_headers_are_stripped_unless_the_peer_is_a_trusted_proxy():
    sent = {
        "Authorization": "Basic abc",
        "X-Forwarded-For": "10.9.9.9",
        "X-Forwarded-Host": "evil",
        "X-Real-IP": "10.9.9.9",
        "Forwarded": "for=10.9.9.9",
        "x-proxy-user": "admin",
        "x-proxy-roles": "all_access",
        "X-Custom-Auth": "root",
        "Connection": "keep-alive, X-Secret",
        "X-Secret": "s",
    }
    identity = Identity(["10.0.0.0/8"], ["X-Custom-Auth"])
    clean = identity.clean(request_with(sent, "192.0.2.7"))
    assert dict(clean) == {
        "Authorization": "Basic abc",
        "Connection": "keep-alive, X-Secret",  # hop-by-hop: dropped when forwarded
        "X-Forwarded-For": "192.0.2.7",
        "X-Forwarded-Proto": "http",
    }
    trusted = identity.clean(request_with(sent, "10.1.2.3"))
    assert trusted["x-proxy-user"] == "admin" and "X-Secret" not in trusted
    assert trusted["X-Forwarded-For"] == "10.9.9.9, 10.1.2.3"
    with pytest.raises(ValueError, match="--trusted-proxies"):
        networks(["not-an-address"])


def test_filter_path_keeps_and_drops_what_opensearch_would():
    body = {
        "took": 3,
        "hits": {
            "total": {"value": 2, "relation": "eq"},
            "hits": [{"_id": "a", "_index": "i", "_source": {"t": 1}}, {"_id": "b", "_index": "j"}],
        },
    }
    assert filter_path(body, "hits.hits._id") == {"hits": {"hits": [{"_id": "a"}, {"_id": "b"}]}}
    assert filter_path(body, "took,**._index") == {
        "took": 3,
        "hits": {"hits": [{"_index": "i"}, {"_index": "j"}]},
    }
    assert filter_path(body, "hits.total.*") == {"hits": {"total": body["hits"]["total"]}}
    assert filter_path(body, "-hits.hits._source")["hits"]["hits"][0] == {"_id": "a", "_index": "i"}
    assert filter_path(body, "missing") == {}
    data, kind = render(body, {"format": "yaml"})
    assert kind == "application/yaml" and data.startswith(b"---")
    data, kind = render(body, {"pretty": ""})
    assert kind == "application/json; charset=UTF-8" and json.loads(data) == body
    assert b"\n  " in data


def test_the_passage_chunk_follows_the_models_device():
    import torch

    from bridge.gateway.batcher import passage_chunk_for

    assert passage_chunk_for(torch.device("cpu")) == passage_chunk_for("cpu") == 2
    assert passage_chunk_for(torch.device("cuda", 1)) == passage_chunk_for("cuda:0") == 32
