"""A bounded cache of query vectors per served model: a text asked again costs no encode.

Discover sends the same text several times (paging, refresh, the histogram, a filter pill
added), and every Dev Tools run repeats its query. The cache keeps the most recently used
`size` texts' vectors for `ttl` seconds (least recently used out first); it lives on the event
loop's thread only, so it needs no lock. Vectors depend only on the text and the model, never
on the caller, so sharing them between callers reveals nothing a caller could not compute.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

DEFAULT_SIZE = 10_000
DEFAULT_TTL = 600.0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expired: int = 0


class VectorCache:
    """text -> float32 row, at most `size` of them, each for `ttl` seconds (0 or less: off)."""

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        ttl: float = DEFAULT_TTL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be 0 or more, got {size}")
        if ttl < 0:
            raise ValueError(f"ttl must be 0 or more seconds, got {ttl}")
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self.stats = CacheStats()
        self._rows: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, text: str) -> np.ndarray | None:
        """The cached vector (counted as a hit), or None (a miss)."""
        if not self.enabled:
            return None
        entry = self._rows.get(text)
        if entry is not None and entry[0] <= self.clock():
            del self._rows[text]
            self.stats.expired += 1
            entry = None
        if entry is None:
            self.stats.misses += 1
            return None
        self._rows.move_to_end(text)
        self.stats.hits += 1
        return entry[1]

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        if not self.enabled:
            return
        expires = self.clock() + self.ttl
        for text, row in items:
            row = np.array(row, dtype=np.float32, copy=True)
            row.setflags(write=False)  # callers share it: nobody may change it
            self._rows[text] = (expires, row)
            self._rows.move_to_end(text)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)
            self.stats.evictions += 1

    def describe(self) -> dict:
        s = self.stats
        return {
            "size": self.size,
            "ttl_s": self.ttl,
            "entries": len(self._rows),
            "hits": s.hits,
            "misses": s.misses,
            "evictions": s.evictions,
            "expired": s.expired,
        }
