"""The gateway's query-vector cache: bounded, expiring, and a repeated text costs no encode."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bridge.gateway.batcher import MicroBatcher
from bridge.gateway.models import ServedModel
from bridge.gateway.vector_cache import VectorCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row(i: float) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


def test_least_recently_used_text_leaves_first():
    cache = VectorCache(2, 60)
    cache.put_many([("a", row(1)), ("b", row(2))])
    assert cache.get("a") is not None  # a is now the most recent
    cache.put_many([("c", row(3))])
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2
    assert cache.describe() == {
        "size": 2,
        "ttl_s": 60,
        "entries": 2,
        "hits": 3,
        "misses": 1,
        "evictions": 1,
        "expired": 0,
    }


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = VectorCache(10, 5, clock=clock)
    cache.put_many([("a", row(1))])
    clock.now += 4.9
    np.testing.assert_array_equal(cache.get("a"), row(1))
    clock.now += 0.2
    assert cache.get("a") is None
    assert cache.describe()["expired"] == 1 and len(cache) == 0


def test_cached_rows_cannot_be_changed_by_a_caller():
    cache = VectorCache(10, 5)
    original = row(1)
    cache.put_many([("a", original)])
    original[0] = 9  # the caller's array is copied
    cached = cache.get("a")
    assert cached[0] == 1
    with pytest.raises(ValueError):
        cached[0] = 7


@pytest.mark.parametrize("size, ttl", [(0, 60), (10, 0)])
def test_size_or_ttl_zero_switches_it_off(size, ttl):
    cache = VectorCache(size, ttl)
    cache.put_many([("a", row(1))])
    assert cache.get("a") is None and len(cache) == 0
    assert cache.describe()["hits"] == 0


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        VectorCache(-1, 5)
    with pytest.raises(ValueError):
        VectorCache(5, -1)


def served(cache: VectorCache, calls: list[list[str]]) -> ServedModel:
    """A ServedModel whose encoder is a plain function of the text, recording each call."""

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], np.float32)

    class Spec:  # only what ServedModel.vectors touches
        pass

    batcher = MicroBatcher({"query": encode, "passage": encode}, name="test")
    return ServedModel(name="m", encoder=None, spec=Spec(), batcher=batcher, cache=cache)


def test_a_repeated_text_is_not_encoded_again_and_gets_the_same_vector():
    calls: list[list[str]] = []
    model = served(VectorCache(100, 60), calls)
    uncached = served(VectorCache(0, 0), [])
    try:

        async def go():
            first = await model.vectors(["vitamin d", "malaria"])
            again = await model.vectors(["malaria", "vitamin d", "new text"])
            reference = await uncached.vectors(["vitamin d", "malaria", "new text"])
            return first, again, reference

        first, again, reference = asyncio.run(go())
    finally:
        model.batcher.close()
        uncached.batcher.close()
    assert calls == [["vitamin d", "malaria"], ["new text"]]
    for text in ("vitamin d", "malaria", "new text"):
        np.testing.assert_array_equal(again[text], reference[text])
    np.testing.assert_array_equal(first["malaria"], again["malaria"])
    stats = model.cache.describe()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 3, 3)
    assert model.batcher.stats.as_dict()["texts"] == 3
