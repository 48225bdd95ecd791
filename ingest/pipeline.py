"""The write path: records -> batches -> encoder -> bulk, pipelined, with rejects and resume.

Encoding runs in the calling thread while a second thread indexes the previous batch, so wall
time approaches the larger of encode and index time. Documents are indexed under their own id,
and each batch first asks which of its ids are already there (a realtime multi-get, which needs
no refresh): a run killed at any point and started again indexes the rest and encodes nothing
twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import RequestError, TransportError
from opensearchpy.helpers import streaming_bulk
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)
from tqdm import tqdm

import mappings
from bridge.errors import BadInput, error_reason
from bridge.indexes import META_KEY, IndexSpec, check_compatible, read_spec
from ingest.readers import Record, Rejected

if TYPE_CHECKING:
    from bridge.encoder import Encoder

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
PAUSED_REFRESH_KEY = "paused_refresh_interval"


@dataclass
class IngestStats:
    read: int = 0
    indexed: int = 0
    rejected: int = 0
    already_present: int = 0
    truncated: int = 0
    encoded: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0
    index_s: float = 0.0

    def summary(self) -> str:
        return (
            f"read {self.read}, indexed {self.indexed}, rejected {self.rejected}, "
            f"already present {self.already_present}, truncated {self.truncated}, "
            f"encoded {self.encoded}; "
            f"wall {self.wall_s:.1f}s, encode {self.encode_s:.1f}s, index {self.index_s:.1f}s"
        )


@dataclass(frozen=True, kw_only=True)
class IndexOptions:
    """How a new index is created; ignored when the index exists."""

    engine: str = "lucene"
    analyzer: str = "english"
    m: int = 16
    ef_construction: int = 128
    shards: int = 1
    replicas: int = 0


class RejectsFile:
    """JSONL of rejected records (line, id, reason), written lazily and thread-safely."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._lock = threading.Lock()
        path.unlink(missing_ok=True)  # the file describes this run only

    def write(self, line: int, doc_id: str | None, reason: str) -> None:
        with self._lock:
            if self._fh is None:
                self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(json.dumps({"line": line, "id": doc_id, "reason": reason}) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()


def ensure_index(
    client: OpenSearch, index: str, spec: IndexSpec, options: IndexOptions = IndexOptions()
) -> bool:
    """Create the index for `spec`, or check that the existing one matches; True when created."""
    stored = read_spec(client, index)
    if stored is not None:
        check_compatible(index, stored, spec)
        return False
    body = mappings.index_body(
        dimension=spec.dimension,
        similarity=spec.similarity,
        meta=spec.meta(),
        engine=options.engine,
        analyzer=options.analyzer,
        m=options.m,
        ef_construction=options.ef_construction,
        shards=options.shards,
        replicas=options.replicas,
    )
    try:
        client.indices.create(index=index, body=body)
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":  # another worker was first
            return ensure_index(client, index, spec, options)
        raise BadInput(
            f"OpenSearch refused to create index {index!r} ({error_reason(exc)}): check "
            "--engine (faiss needs a cluster with its native library) and the other index options."
        ) from exc
    return True


@contextlib.contextmanager
def refresh_paused(client: OpenSearch, index: str) -> Iterator[None]:
    """Turn refresh off for the run and restore it afterwards, also when the run fails.

    The original interval is kept in the index's _meta while paused, so a run that was killed
    before it could restore it leaves the next run able to.
    """
    meta = _meta(client, index)
    ours = meta.setdefault(META_KEY, {})
    if PAUSED_REFRESH_KEY in ours:
        original = ours[PAUSED_REFRESH_KEY]
    else:
        (body,) = client.indices.get_settings(index=index).values()
        original = body["settings"]["index"].get("refresh_interval")  # None: the default
        ours[PAUSED_REFRESH_KEY] = original
        client.indices.put_mapping(index=index, body={"_meta": meta})
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    try:
        yield
    finally:
        client.indices.put_settings(index=index, body={"index": {"refresh_interval": original}})
        meta = _meta(client, index)
        meta.get(META_KEY, {}).pop(PAUSED_REFRESH_KEY, None)
        client.indices.put_mapping(index=index, body={"_meta": meta})
        client.indices.refresh(index=index)


def _meta(client: OpenSearch, index: str) -> dict[str, Any]:
    (body,) = client.indices.get_mapping(index=index).values()
    return dict(body["mappings"].get("_meta") or {})


def ingest(
    records: Iterable[Record | Rejected],
    *,
    client: OpenSearch,
    index: str,
    encoder: Encoder,
    rejects: RejectsFile,
    options: IndexOptions = IndexOptions(),
    batch_size: int = 64,
    progress: bool | None = None,
    max_retry_seconds: float = 300.0,
) -> IngestStats:
    """Index every good record once (text plus vector); reject the rest with a reason."""
    spec = IndexSpec.of(encoder)
    ensure_index(client, index, spec, options)
    stats = IngestStats()
    started = time.perf_counter()
    bar = tqdm(
        unit="doc", desc=f"ingest {index}", disable=None if progress is None else not progress
    )
    writer = _BulkWriter(client, index, spec.vector_field, stats, rejects, bar, max_retry_seconds)
    seen: set[str] = set()
    try:
        with refresh_paused(client, index):
            writer.start()
            try:
                for batch in _batches(records, batch_size):
                    todo = _triage(batch, seen, stats, rejects, bar)
                    todo = _drop_present(client, index, todo, stats, bar, writer.retrying.copy())
                    if not todo:
                        continue
                    t0 = time.perf_counter()
                    vectors, truncated = encoder.encode_passages(
                        [r.passage for r in todo], return_truncated=True
                    )
                    stats.encode_s += time.perf_counter() - t0
                    stats.encoded += len(todo)
                    stats.truncated += int(np.count_nonzero(truncated))
                    writer.put(todo, vectors)
            finally:
                writer.finish()
    finally:
        bar.close()
        rejects.close()
        stats.wall_s = time.perf_counter() - started
    return stats


def _batches(records: Iterable[Record | Rejected], size: int) -> Iterator[list[Record | Rejected]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _triage(
    batch: Sequence[Record | Rejected],
    seen: set[str],
    stats: IngestStats,
    rejects: RejectsFile,
    bar: tqdm,
) -> list[Record]:
    """Count what was read; reject bad lines and ids seen before in this input."""
    good: list[Record] = []
    for item in batch:
        stats.read += 1
        if isinstance(item, Rejected):
            _reject(stats, rejects, bar, item.line, item.doc_id, item.reason)
        elif item.doc_id in seen:
            _reject(stats, rejects, bar, item.line, item.doc_id, "duplicate id in input")
        else:
            seen.add(item.doc_id)
            good.append(item)
    return good


def _reject(stats: IngestStats, rejects: RejectsFile, bar: tqdm, line: int, doc_id, reason) -> None:
    rejects.write(line, doc_id, reason)
    stats.rejected += 1
    bar.update(1)


def _drop_present(
    client: OpenSearch,
    index: str,
    todo: list[Record],
    stats: IngestStats,
    bar: tqdm,
    retrying: Retrying,
) -> list[Record]:
    """Leave out documents an earlier (killed) run already indexed: they are not encoded again."""
    if not todo:
        return todo
    ids = [r.doc_id for r in todo]
    resp = retrying(client.mget, index=index, body={"ids": ids}, _source=False, realtime=True)
    found = {d["_id"] for d in resp["docs"] if d.get("found")}
    if found:
        stats.already_present += len(found)
        bar.update(len(found))
    return [r for r in todo if r.doc_id not in found]


class _TransientItems(Exception):
    """Some bulk items failed with a status worth retrying (429, 5xx)."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (_TransientItems, OSConnectionError)):
        return True
    return isinstance(exc, TransportError) and exc.status_code in TRANSIENT_STATUS


class _BulkWriter:
    """Indexes batches on a background thread while the caller encodes the next one."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        vector_field: str,
        stats: IngestStats,
        rejects: RejectsFile,
        bar: tqdm,
        max_retry_seconds: float,
    ) -> None:
        self.client, self.index, self.vector_field = client, index, vector_field
        self.stats, self.rejects, self.bar = stats, rejects, bar
        self.retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential(multiplier=0.5, max=20),
            stop=stop_after_delay(max_retry_seconds),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "transient failure (%s); retrying", state.outcome.exception()
            ),
        )
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="bulk-writer", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, records: list[Record], vectors: np.ndarray) -> None:
        self._raise_if_failed()
        self._queue.put((records, vectors))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain so the producer never blocks on a dead writer
            try:
                t0 = time.perf_counter()
                self._index(*item)
                self.stats.index_s += time.perf_counter() - t0
            except BaseException as exc:  # handed to the producer thread
                self._error = exc

    def _index(self, records: list[Record], vectors: np.ndarray) -> None:
        pending = {
            r.doc_id: (
                r,
                {
                    "_op_type": "index",
                    "_index": self.index,
                    "_id": r.doc_id,
                    "_source": _source(r, self.vector_field, v),
                },
            )
            for r, v in zip(records, vectors, strict=True)
        }
        for attempt in self.retrying.copy():
            with attempt:
                self._send(pending)

    def _send(self, pending: dict[str, tuple[Record, dict]]) -> None:
        """Bulk the pending actions; drop each finished one so a retry resends only the rest."""
        actions = [action for _, action in pending.values()]
        transient = 0
        for ok, result in streaming_bulk(
            self.client,
            actions,
            chunk_size=len(actions),
            raise_on_error=False,
            max_retries=0,  # retries of 429 and 5xx items happen here, for the whole batch
        ):
            info = next(iter(result.values()))
            doc_id = str(info.get("_id"))
            record, _ = pending[doc_id]
            if ok:
                self.stats.indexed += 1
            elif info.get("status") in TRANSIENT_STATUS:
                transient += 1
                continue
            else:
                reason = f"refused by OpenSearch: {error_reason(info)}"
                _reject(self.stats, self.rejects, self.bar, record.line, doc_id, reason)
                del pending[doc_id]
                continue
            self.bar.update(1)
            del pending[doc_id]
        if transient:
            raise _TransientItems(f"{transient} items failed with a transient status")


def _source(record: Record, vector_field: str, vector: np.ndarray) -> dict[str, Any]:
    source: dict[str, Any] = {"doc_id": record.doc_id, "text": record.text}
    if record.title:  # no empty titles cluttering Dashboards
        source["title"] = record.title
    source[vector_field] = vector.tolist()
    return source
