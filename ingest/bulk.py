"""The bulk writer: indexes encoded batches on a background thread, retrying transient failures.

Documents are created (`op_type: create`), never overwritten, so the cluster decides which of
two records with one id came first, also across parallel `--shard` workers. Each document keeps
its origin (input line, content digest, run) in a stored-only field: a conflict is then told
apart as this run's own earlier attempt (indexed), an earlier run of the same input (already
present) or another record with the same id (rejected as a duplicate).

Items the cluster refuses for good go to the rejects file with its reason; 429 and 5xx items and
dropped connections are retried with back-off (tenacity), resending only what is still pending,
for as long as the cluster has not failed for `max_wait` seconds on end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from bridge import backends
from bridge.backends import Client
from bridge.errors import error_reason
from ingest.ledger import Ledger
from ingest.readers import Record
from mappings import ORIGIN_FIELD

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
CONFLICT = 409
CHUNK_DOCS = 256
CHUNK_BYTES = 16 * 1024 * 1024  # well below both engines' 100 MB http.max_content_length

T = TypeVar("T")


class TransientItems(Exception):
    """Some bulk items failed with a status worth retrying (429, 5xx)."""


def is_transient(exc: BaseException) -> bool:
    """Transient items, or a client error of either engine worth a retry (429, 5xx, no answer)."""
    return isinstance(exc, TransientItems) or backends.is_transient(exc)


class Patience:
    """How long one run waits for a failing cluster: retries with back-off stop once no request
    has succeeded for `max_wait` seconds. Shared by the reading and the indexing thread, so an
    outage is measured once, not once per caller."""

    WARN_EVERY_S = 30.0

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self._since: float | None = None
        self._warned = -float("inf")
        self._lock = threading.Lock()

    def ok(self) -> None:
        """The cluster answered: any outage is over."""
        with self._lock:
            self._since = None

    def _stop(self, state: RetryCallState) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            return now - self._since >= self.max_wait

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        with self._lock:  # a warning now and then; every retry only at INFO
            now = time.monotonic()
            warn, self._warned = (
                (True, now) if now - self._warned >= self.WARN_EVERY_S else (False, self._warned)
            )
        log.log(
            logging.WARNING if warn else logging.INFO,
            "the cluster failed (%s); retrying for up to %.0fs",
            error_reason(exc) if exc is not None else "?",
            self.max_wait,
        )

    def retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=0.5, max=10),
            stop=self._stop,
            reraise=True,
            before_sleep=self._before_sleep,
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried while the failure is transient and patience lasts."""
        for attempt in self.retrying():
            with attempt:
                result = fn(*args, **kwargs)
        self.ok()
        return result


def origin(record: Record, run_id: str) -> dict[str, Any]:
    """Where a document came from: its input line (and file, when a run reads several), a
    digest of its content, and the run."""
    found = {"line": record.line, "digest": record.digest, "run": run_id}
    if record.file is not None:
        found["file"] = record.file
    return found


def where(line: Any, file: Any) -> str:
    """`line 7`, or `line 7 of part-2.jsonl` when the line's input is known."""
    return f"line {line} of {file}" if file is not None else f"line {line}"


def document_source(
    record: Record, vector_field: str, vector: np.ndarray, run_id: str | None = None
) -> dict[str, Any]:
    """The `_source` of an indexed record: id, text, title when there is one, the vector and,
    with a run id, its origin."""
    source: dict[str, Any] = {"doc_id": record.doc_id, "text": record.text}
    if record.title:  # no empty titles cluttering Dashboards
        source["title"] = record.title
    source[vector_field] = vector.tolist()
    if run_id is not None:
        source[ORIGIN_FIELD] = origin(record, run_id)
    return source


@dataclass(frozen=True)
class Verdict:
    """What a document already stored under a record's id means for that record."""

    fate: str  # "ours" (this run indexed it), "present" (an earlier run did), "duplicate"
    reason: str | None = None


def judge(record: Record, stored: dict[str, Any] | None, run_id: str) -> Verdict:
    """Compare a record with the `_source` already stored under its id."""
    found = (stored or {}).get(ORIGIN_FIELD)
    if not isinstance(found, dict):
        return Verdict("present")  # indexed before dotbridge kept origins: trust the id
    line, file = found.get("line"), found.get("file")
    # An origin without a file (a one-input run) matches the record's line in any input.
    same_line = line == record.line and (file is None or file == record.file)
    if same_line and found.get("digest") == record.digest:
        return Verdict("ours" if found.get("run") == run_id else "present")
    if same_line:
        place = (
            f"line {line} of an earlier input"
            if file is None
            else f"line {line} of {file} in an earlier run"
        )
        return Verdict("duplicate", f"id already indexed with other content (from {place})")
    return Verdict("duplicate", f"duplicate id in input ({where(line, file)} holds it)")


def fetch_origins(client: Client, index: str, ids: list[str]) -> list[dict[str, Any] | None]:
    """The stored origin of each id (None where there is no document), realtime: no refresh."""
    resp = client.mget(index=index, body={"ids": ids}, _source_includes=ORIGIN_FIELD, realtime=True)
    return [d.get("_source", {}) if d.get("found") else None for d in resp["docs"]]


_Key = tuple[str | None, int]  # (file, line): a record's place in the input


@dataclass
class _Pending:
    record: Record
    action: dict[str, Any] = field(repr=False)


class BulkWriter:
    """Indexes batches on a background thread while the caller encodes the next one."""

    def __init__(
        self,
        client: Client,
        index: str,
        vector_field: str,
        ledger: Ledger,
        patience: Patience,
        *,
        run_id: str,
        chunk_docs: int = CHUNK_DOCS,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.client, self.index, self.vector_field = client, index, vector_field
        self.backend = backends.backend_of(client)
        self.ledger, self.patience, self.run_id = ledger, patience, run_id
        self.chunk_docs, self.chunk_bytes = chunk_docs, chunk_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="bulk-writer", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, records: list[Record], vectors: np.ndarray | list[str]) -> None:
        """Hand a batch over; raises the writer's error, if it had one, instead.

        `vectors` are the records' vectors, or their whole `_source`s already serialised as
        JSON (`document_source` with this writer's run id, built where the vectors were made:
        serialising floats is the costliest step of indexing, and it spreads over workers).
        """
        self._raise_if_failed()
        self._queue.put((records, vectors))
        self._raise_if_failed()

    def finish(self) -> None:
        """Index everything handed over, stop the thread; raise the writer's error if any."""
        self._stop()
        self._raise_if_failed()

    def abandon(self) -> None:
        """Stop after the caller failed: index what was handed over, log (not raise) a failure,
        so that the caller's error stays the one the user sees."""
        self._stop()
        if self._error is not None:
            log.warning("the bulk writer failed as well: %s", error_reason(self._error))

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

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
                self.ledger.index_time(time.perf_counter() - t0)
            except BaseException as exc:  # handed to the producer thread
                self._error = exc

    def _index(self, records: list[Record], vectors: np.ndarray | list[str]) -> None:
        pending = {
            (r.file, r.line): _Pending(
                r,
                {
                    "_op_type": "create",  # never overwrite: the cluster decides who was first
                    "_index": self.index,
                    "_id": r.doc_id,
                    # A string is sent as it is (both engines' bulk helpers): JSON made already.
                    "_source": v
                    if isinstance(v, str)
                    else document_source(r, self.vector_field, v, self.run_id),
                },
            )
            for r, v in zip(records, vectors, strict=True)
        }
        for attempt in self.patience.retrying():
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.ledger.retried(len(pending))
                self._send(pending)

    def _send(self, pending: dict[_Key, _Pending]) -> None:
        """Bulk the pending actions; drop each settled one so a retry resends only the rest."""
        keys = list(pending)
        results = self.backend.streaming_bulk(
            self.client,
            [pending[key].action for key in keys],
            chunk_size=self.chunk_docs,
            max_chunk_bytes=self.chunk_bytes,
            raise_on_error=False,
            max_retries=0,  # retries of 429 and 5xx items happen here, for the whole batch
        )
        transient, conflicts = 0, []
        for key, (ok, result) in zip(keys, results, strict=True):
            info = next(iter(result.values()))
            status = info.get("status")
            if ok:
                self.ledger.indexed()
            elif status == CONFLICT:
                conflicts.append(key)
                continue
            elif status in TRANSIENT_STATUS:
                transient += 1
                continue
            else:
                record = pending[key].record
                reason = f"refused by {self.backend.product}: {error_reason(info)}"
                self.ledger.reject(record.line, record.doc_id, reason, record.file)
            del pending[key]
        if len(pending) < len(keys):
            self.patience.ok()  # the cluster is answering, even if not to everything yet
        if conflicts:
            self._settle_conflicts(pending, conflicts)
        if transient:
            raise TransientItems(f"{transient} items failed with a transient status")

    def _settle_conflicts(self, pending: dict[_Key, _Pending], keys: list[_Key]) -> None:
        """A create met an existing document: ours from a lost reply, an earlier run's, or
        another record's with the same id."""
        records = [pending[key].record for key in keys]
        stored = fetch_origins(self.client, self.index, [r.doc_id for r in records])
        for record, source in zip(records, stored, strict=True):
            if source is None:
                continue  # deleted in between: stays pending, and is sent again
            verdict = judge(record, source, self.run_id)
            if verdict.fate == "ours":
                self.ledger.indexed()
            elif verdict.fate == "present":
                self.ledger.already_present()
            else:
                reason = verdict.reason or "duplicate id"
                self.ledger.reject(record.line, record.doc_id, reason, record.file)
            del pending[record.file, record.line]
        if any(key in pending for key in keys):
            raise TransientItems("a conflicting document vanished before it could be read")
