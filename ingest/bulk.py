"""The bulk writer: indexes encoded batches on a background thread, retrying transient failures.

Items the cluster refuses for good go to the rejects file with its reason; 429 and 5xx items and
dropped connections are retried with back-off (tenacity), resending only what is still pending.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from bridge import backends
from bridge.backends import Client
from bridge.errors import error_reason
from ingest.ledger import Ledger
from ingest.readers import Record

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class TransientItems(Exception):
    """Some bulk items failed with a status worth retrying (429, 5xx)."""


def is_transient(exc: BaseException) -> bool:
    """Transient items, or a client error of either engine worth a retry (429, 5xx, no answer)."""
    return isinstance(exc, TransientItems) or backends.is_transient(exc)


def retrying(max_seconds: float) -> Retrying:
    """Back-off for transient failures, giving up after `max_seconds`."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.5, max=20),
        stop=stop_after_delay(max_seconds),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "transient failure (%s); retrying", state.outcome.exception()
        ),
    )


def document_source(record: Record, vector_field: str, vector: np.ndarray) -> dict[str, Any]:
    """The `_source` of an indexed record: id, text, title when there is one, and the vector."""
    source: dict[str, Any] = {"doc_id": record.doc_id, "text": record.text}
    if record.title:  # no empty titles cluttering Dashboards
        source["title"] = record.title
    source[vector_field] = vector.tolist()
    return source


class BulkWriter:
    """Indexes batches on a background thread while the caller encodes the next one."""

    def __init__(
        self,
        client: Client,
        index: str,
        vector_field: str,
        ledger: Ledger,
        max_retry_seconds: float,
    ) -> None:
        self.client, self.index, self.vector_field = client, index, vector_field
        self.backend = backends.backend_of(client)
        self.ledger = ledger
        self.retrying = retrying(max_retry_seconds)
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
                self.ledger.index_time(time.perf_counter() - t0)
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
                    "_source": document_source(r, self.vector_field, v),
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
        for ok, result in self.backend.streaming_bulk(
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
                self.ledger.indexed()
            elif info.get("status") in TRANSIENT_STATUS:
                transient += 1
                continue
            else:
                self.ledger.reject(
                    record.line, doc_id, f"refused by {self.backend.product}: {error_reason(info)}"
                )
            del pending[doc_id]
        if transient:
            raise TransientItems(f"{transient} items failed with a transient status")
