"""Micro-batching: concurrent requests share one encoder through batches on its own thread.

The event loop never runs the model. Each request puts its texts on a queue and awaits a
future; one worker thread per model takes everything that queued up while the previous batch
ran (up to `max_batch` texts, after waiting `max_wait` seconds for more when asked), encodes it
in one call, and hands each request its rows. Pass-through traffic keeps flowing meanwhile:
torch releases the GIL while it computes. Passages (the model API's floods) are encoded a
chunk at a time, and queries that arrived meanwhile run between chunks, so a search waits for
at most one chunk of someone else's passages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge.gateway.errors import Overloaded

log = logging.getLogger(__name__)

KINDS = ("query", "passage")
# Passages per forward pass between queries, by device: on a CPU a long passage costs tens of
# milliseconds, and 2 kept a search's wait short with no loss of passage throughput (measured,
# docs/gateway.md); a GPU wants larger batches to be used well (32: not measured, no GPU here).
CHUNK_CPU, CHUNK_GPU = 2, 32


def passage_chunk_for(device: object) -> int:
    """The default `--passage-chunk` for a model on `device` (a torch device or its name)."""
    return CHUNK_CPU if str(device).split(":")[0] == "cpu" else CHUNK_GPU


@dataclass
class _Job:
    texts: list[str]
    kind: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


@dataclass
class BatchStats:
    """What the worker did: batches run, texts encoded, the largest batch, requests served."""

    batches: int = 0
    texts: int = 0
    requests: int = 0
    largest: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int, texts: int) -> None:
        with self.lock:
            self.batches += 1
            self.requests += requests
            self.texts += texts
            self.largest = max(self.largest, texts)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "batches": self.batches,
                "requests": self.requests,
                "texts": self.texts,
                "largest_batch": self.largest,
            }


class MicroBatcher:
    """`await encode(texts, kind)` from any coroutine; one thread runs the model in batches.

    `encoders` maps a kind ("query" or "passage") to a function of a list of texts returning
    float32 rows in input order (an Encoder's `encode_queries` / `encode_passages`). Each kind
    has its own bounded queue (`max_queue` texts: Overloaded past it) and queries go first, so a
    flood of passages from the model API never makes a search wait behind it; a job waits at
    most `timeout` seconds, and a job whose caller left is dropped before it is encoded.
    Texts of the later kinds are encoded `chunk` at a time; between chunks the queries that
    queued meanwhile run first, and once every caller of a batch has left (timed out or hung
    up) its remaining chunks are skipped.

    `nice` lowers the worker's CPU priority by that much (Linux: a thread's own nice value, which
    the threads torch starts from it inherit), so on a machine whose cores the model fills, the
    event loop and the cluster still get the CPU first and pass-through traffic keeps its pace.
    """

    def __init__(
        self,
        encoders: dict[str, Callable[[list[str]], np.ndarray]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.0,
        max_queue: int = 8192,
        timeout: float | None = None,
        nice: int = 0,
        chunk: int = CHUNK_CPU,
        name: str = "encoder",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds, got {max_wait}")
        unknown = set(encoders) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; choose from: {', '.join(KINDS)}")
        self.encoders = encoders
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.timeout = timeout
        self.nice = nice
        self.chunk = chunk
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._waiting: dict[str, deque[_Job]] = {kind: deque() for kind in KINDS}
        self._queued = dict.fromkeys(KINDS, 0)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"dotbridge-{name}", daemon=True)
        self._thread.start()

    async def encode(self, texts: Sequence[str], kind: str = "query") -> np.ndarray:
        """The texts' vectors, shape (len(texts), dim), computed in a shared batch."""
        if kind not in self.encoders:
            raise ValueError(f"unknown kind {kind!r}; choose one of: {', '.join(self.encoders)}")
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), kind, loop, loop.create_future())
        if not job.texts:
            raise ValueError("nothing to encode: give at least one text")
        with self._cond:
            if self._closed:
                raise Overloaded("The gateway is shutting down: retry on another one.")
            queued = self._queued[kind]
            if queued and queued + len(job.texts) > self.max_queue:
                raise Overloaded(
                    f"The model has {queued} texts waiting to be encoded: retry in a moment "
                    "(the gateway's --max-queue limit)."
                )
            self._queued[kind] += len(job.texts)
            self._waiting[kind].append(job)
            self._cond.notify()
        try:
            return await asyncio.wait_for(job.future, self.timeout)
        except TimeoutError:
            raise Overloaded(
                f"The model did not encode this request within {self.timeout:g} s: the gateway "
                "is busy, retry in a moment (its --encode-timeout limit).",
                retry_after=5,
            ) from None

    @property
    def queued(self) -> dict[str, int]:
        with self._cond:
            return dict(self._queued)

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # ---- the worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        lower_priority(self.nice)
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            for kind in KINDS:
                mine = [job for job in jobs if job.kind == kind and not job.future.done()]
                if mine:
                    self._run(mine, kind)

    def _collect(self) -> list[_Job] | None:
        """Queued jobs, queries first, up to max_batch texts (at least one job); None: closed
        with nothing left."""
        with self._cond:
            while not self._pending():
                if self._closed:
                    return None
                self._cond.wait()
            if self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                while self._pending() < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            jobs: list[_Job] = []
            for kind in KINDS:
                self._take(kind, jobs)
            return jobs

    def _take(self, kind: str, jobs: list[_Job]) -> None:
        """Move queued jobs of `kind` onto `jobs` while the batch stays within max_batch texts
        (one job at least); the caller holds the lock."""
        count = sum(len(job.texts) for job in jobs)
        waiting = self._waiting[kind]
        while waiting and (not jobs or count + len(waiting[0].texts) <= self.max_batch):
            job = waiting.popleft()
            self._queued[kind] -= len(job.texts)
            jobs.append(job)
            count += len(job.texts)

    def _pending(self) -> int:
        return sum(self._queued.values())

    def _run(self, jobs: list[_Job], kind: str) -> None:
        # One forward pass for the distinct texts of every job: a text asked twice is encoded once.
        distinct = list(dict.fromkeys(text for job in jobs for text in job.texts))
        try:
            if kind == KINDS[0] or len(distinct) <= self.chunk:
                vectors = self.encoders[kind](distinct)
            else:
                vectors = self._in_chunks(jobs, distinct, kind)
                if vectors is None:
                    return
        except Exception as exc:  # handed to the waiting requests, which report it
            log.warning("encoding a batch of %d texts failed: %s", len(distinct), exc)
            for job in jobs:
                _hand(job, _fail, exc)
            return
        row = {text: i for i, text in enumerate(distinct)}
        self.stats.add(len(jobs), len(distinct))
        for job in jobs:
            result = vectors[[row[text] for text in job.texts]]
            _hand(job, _resolve, result)

    def _in_chunks(self, jobs: list[_Job], texts: list[str], kind: str) -> np.ndarray | None:
        """The texts' vectors, `chunk` at a time, the first kind's waiting jobs run before each
        chunk; None once every job's caller has left (nothing more is encoded for them)."""
        parts = []
        for start in range(0, len(texts), self.chunk):
            if all(job.future.done() for job in jobs):
                log.debug(
                    "every caller of a %s batch left; %d texts skipped", kind, len(texts) - start
                )
                return None
            if start:
                self._first_kind_now()
            parts.append(self.encoders[kind](texts[start : start + self.chunk]))
        return np.concatenate(parts)

    def _first_kind_now(self) -> None:
        """Run the queries that queued while a chunk of passages was encoded."""
        jobs: list[_Job] = []
        with self._cond:
            self._take(KINDS[0], jobs)
        mine = [job for job in jobs if not job.future.done()]
        if mine:
            self._run(mine, KINDS[0])


def _hand(job: _Job, callback, value) -> None:
    """Give a result to the request's event loop; a loop already closed (the server stopped
    while this batch ran) has no one waiting, so the result is dropped."""
    try:
        job.loop.call_soon_threadsafe(callback, job.future, value)
    except RuntimeError:
        log.debug("a batch finished after its event loop closed; its result is dropped")


def _resolve(future: asyncio.Future, value: np.ndarray) -> None:
    if not future.done():  # the request may have been cancelled (client gone)
        future.set_result(value)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def lower_priority(increment: int) -> None:
    """Raise the calling thread's nice value by `increment` (Linux: nice is per thread, and
    threads it starts later, torch's OpenMP pool among them, inherit it); nothing elsewhere."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + increment))
    except OSError as exc:  # a platform that refuses it: the worker runs at normal priority
        log.warning("could not lower the encoder's CPU priority: %s", exc)
