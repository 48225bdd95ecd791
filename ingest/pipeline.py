"""The write path: records -> windows -> encoder -> bulk, pipelined, with rejects and resume.

Encoding runs in the calling thread while a second thread indexes the previous window, so wall
time approaches the larger of encode and index time. A window holds `sort_window` encoder
batches: the encoder sorts the whole window by length before cutting it into batches, so a batch
holds passages of similar length and pads little (sorting inside one batch saves nothing).

Documents are created under their own id, never overwritten, and each window first asks which of
its ids are already there (a realtime multi-get, which needs no refresh): a run killed at any
point and started again indexes the rest and encodes nothing twice. Which record owns an id is
the cluster's decision (see `ingest.bulk`), so nothing here grows with the corpus: no set of
seen ids is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from tqdm import tqdm

from bridge import backends
from bridge.backends import Client
from bridge.errors import BadInput, ConnectionFailed, DotbridgeError, IngestFailed, error_reason
from bridge.indexes import (
    IndexOptions,
    IndexSpec,
    check_index_name,
    ensure_index,
    refresh_paused,
)
from ingest.bulk import BulkWriter, Patience, TransientItems, fetch_origins, is_transient, judge
from ingest.inputs import expand_inputs, read_inputs
from ingest.ledger import IngestStats, Ledger, RejectsFile, default_rejects_path
from ingest.readers import Fields, Record, Rejected, Shard

if TYPE_CHECKING:
    from bridge.encoder import Encoder

SORT_WINDOW = 16
"""Encoder batches sorted by length together before they are cut."""
MAX_WAIT = 120.0
"""Seconds a cluster may fail on end (down, restarting, overloaded) before a run gives up."""
MGET_IDS = 1000


@dataclass
class Encoded:
    """A window of records and what to index for them: their vectors, or their whole `_source`s
    as JSON (made where the vectors were, see `BulkWriter.put`)."""

    records: list[Record]
    vectors: np.ndarray | list[str]
    truncated: int
    seconds: float


@runtime_checkable
class WindowEncoder(Protocol):
    """Encodes windows of records, maybe several at once elsewhere (`ingest.distributed`).

    `submit` hands a window over and returns the windows finished by then, in the order they
    were submitted; `drain` waits for the rest. `spec` is the model's, for the index.
    """

    spec: IndexSpec
    batch_size: int

    def submit(self, records: list[Record], run_id: str) -> Iterator[Encoded]: ...

    def drain(self) -> Iterator[Encoded]: ...

    def close(self) -> None: ...


class InlineEncoder:
    """An `Encoder` in this process: each window is encoded when it is submitted."""

    def __init__(self, encoder: Encoder, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        self.spec = IndexSpec.of(encoder)

    def submit(self, records: list[Record], run_id: str) -> Iterator[Encoded]:
        t0 = time.perf_counter()
        # One call for the whole window: the encoder sorts it by length, then cuts.
        vectors, truncated = self.encoder.encode_passages(
            [r.passage for r in records], batch_size=self.batch_size, return_truncated=True
        )
        seconds = time.perf_counter() - t0
        yield Encoded(records, vectors, int(np.count_nonzero(truncated)), seconds)

    def drain(self) -> Iterator[Encoded]:
        return iter(())

    def close(self) -> None:
        pass


def ingest_corpus(
    corpus: str | Path | Sequence[str | Path],
    *,
    client: Client | Callable[[], Client],
    index: str,
    encoder: Encoder | WindowEncoder | Callable[[], Encoder | WindowEncoder],
    fmt: str = "auto",
    fields: Fields | None = None,
    shard: Shard | None = None,
    limit: int | None = None,
    rejects: Path | None = None,
    options: IndexOptions | None = None,
    progress: bool | None = None,
    sort_window: int = SORT_WINDOW,
    max_wait: float = MAX_WAIT,
) -> IngestStats:
    """Read a corpus (a file, '-' for stdin, several files or glob patterns) and ingest it;
    rejects to `INDEX.rejects.jsonl`.

    The one wiring of reader, encoder and pipeline that the CLI, the demo, the evaluation and
    the benchmark share. The input is checked first: `client` and `encoder` may be given as
    functions, called only once the input has a record and the rejects file is ours, so a
    mistyped path costs neither a model load nor a connection, and creates nothing. A
    `WindowEncoder` made by such a function (Ray's workers) is closed at the end.
    """
    check_index_name(index)  # before anything is read, loaded, connected or created
    shard = shard or Shard()
    files = expand_inputs(corpus)
    records = read_inputs(files, fmt=fmt, fields=fields or Fields(), shard=shard, limit=limit)
    first = next(records, None)
    if first is None:
        if records.nonblank_lines == 0:
            what = f"Input {files[0]!r}" if len(files) == 1 else f"None of the {len(files)} inputs"
            raise BadInput(
                f"{what} holds no records (empty or only blank lines): nothing to ingest."
            )
        return IngestStats()  # this --shard worker's lines are all another's
    rejects_path = rejects or default_rejects_path(index, shard.index, shard.count)
    rejects_file = RejectsFile(rejects_path)
    made = callable(encoder)
    try:
        client = client() if callable(client) else client
        started = time.perf_counter()
        encoder = encoder() if callable(encoder) else encoder
    except BaseException:
        records.close()
        rejects_file.close()
        raise
    startup_s = time.perf_counter() - started
    try:
        stats = ingest(
            chain([first], records),
            client=client,
            index=index,
            encoder=encoder,
            rejects=rejects_file,
            options=options,
            batch_size=encoder.batch_size,
            sort_window=sort_window,
            progress=progress,
            max_wait=max_wait,
            pause_refresh=shard.count == 1,
        )
    finally:
        records.close()
        if made and isinstance(encoder, WindowEncoder):
            encoder.close()
    stats.rejects_path = rejects_path
    stats.startup_s = startup_s
    return stats


def ingest(
    records: Iterable[Record | Rejected],
    *,
    client: Client,
    index: str,
    encoder: Encoder | WindowEncoder,
    rejects: RejectsFile,
    options: IndexOptions | None = None,
    batch_size: int = 64,
    sort_window: int = SORT_WINDOW,
    progress: bool | None = None,
    max_wait: float = MAX_WAIT,
    pause_refresh: bool = True,
) -> IngestStats:
    """Index every good record once (text plus vector); reject the rest with a reason.

    `encoder` is an `Encoder` in this process, or a `WindowEncoder` (Ray's workers), which
    the caller closes. `pause_refresh=False` leaves the index's refresh alone: for one of
    several workers filling one index together, which cannot share a pause. Cluster failures
    end the run with one sentence (ConnectionFailed, IngestFailed); the same call again resumes
    it.
    """
    stats = IngestStats()
    started = time.perf_counter()
    _steady_malloc()
    try:
        items = iter(records)
        first = next(items, None)
        if first is None:
            return stats  # nothing to do: nothing is created
        windows = (
            encoder if isinstance(encoder, WindowEncoder) else InlineEncoder(encoder, batch_size)
        )
        with _as_sentences(backends.backend_of(client).product, index, max_wait):
            spec = windows.spec
            ensure_index(client, index, spec, options)
            _run(
                chain([first], items),
                client=client,
                index=index,
                encoder=windows,
                spec=spec,
                ledger_parts=(stats, rejects),
                window=batch_size * sort_window,
                progress=progress,
                patience=Patience(max_wait),
                pause_refresh=pause_refresh,
            )
    finally:
        rejects.close()
        stats.wall_s = time.perf_counter() - started
    return stats


def _run(
    records: Iterator[Record | Rejected],
    *,
    client: Client,
    index: str,
    encoder: WindowEncoder,
    spec: IndexSpec,
    ledger_parts: tuple[IngestStats, RejectsFile],
    window: int,
    progress: bool | None,
    patience: Patience,
    pause_refresh: bool,
) -> None:
    bar = tqdm(
        unit="doc", desc=f"ingest {index}", disable=None if progress is None else not progress
    )
    ledger = Ledger(*ledger_parts, bar)
    run_id = uuid.uuid4().hex[:12]
    writer = BulkWriter(client, index, spec.vector_field, ledger, patience, run_id=run_id)
    try:
        with refresh_paused(client, index, pause=pause_refresh):
            writer.start()
            try:
                for batch in _batches(records, window):
                    todo = _triage(batch, ledger)
                    todo = _drop_present(client, index, todo, ledger, patience, run_id)
                    if todo:
                        for done in encoder.submit(todo, run_id):
                            _hand_over(done, ledger, writer)
                for done in encoder.drain():
                    _hand_over(done, ledger, writer)
            except BaseException:
                writer.abandon()  # index what was handed over; this error is the one to see
                raise
            writer.finish()
    finally:
        bar.close()


def _hand_over(done: Encoded, ledger: Ledger, writer: BulkWriter) -> None:
    ledger.encoded(len(done.records), done.truncated, done.seconds)
    writer.put(done.records, done.vectors)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def _steady_malloc() -> None:
    """Keep the process's memory flat however long the corpus (glibc).

    Length-sorted windows feed the model tensors of ever-changing sizes. glibc raises its mmap
    threshold each time a large block is freed, after which blocks of that size live on the heap
    and fragment it: RSS grew by ~150 MB between 5k and 50k records. A fixed threshold keeps
    large blocks in mmap, returned to the system when freed. Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): its own behaviour
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)


@contextlib.contextmanager
def _as_sentences(product: str, index: str, max_wait: float) -> Iterator[None]:
    """Cluster failures that outlast the run's patience, as one sentence each."""
    resume = "rerun the same command: it resumes where this run stopped"
    try:
        yield
    except DotbridgeError:
        raise
    except TransientItems as exc:
        raise IngestFailed(
            f"{product} kept refusing documents for {index!r} as overloaded (429/5xx) for "
            f"{max_wait:.0f}s: give the cluster more capacity or fewer workers, then {resume}."
        ) from exc
    except backends.client_errors() as exc:
        if is_transient(exc):
            raise ConnectionFailed(
                f"{product} stopped answering during the ingest into {index!r} "
                f"({error_reason(exc)}) and was not back within {max_wait:.0f}s: start it "
                f"again, then {resume}."
            ) from exc
        raise IngestFailed(
            f"{product} refused a request of the ingest into {index!r} ({error_reason(exc)}): "
            f"fix that, then {resume}."
        ) from exc


def _batches(records: Iterable[Record | Rejected], size: int) -> Iterator[list[Record | Rejected]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def _triage(batch: Sequence[Record | Rejected], ledger: Ledger) -> list[Record]:
    """Count what was read; reject the lines the reader could not make a record of."""
    ledger.read(len(batch))
    good: list[Record] = []
    for item in batch:
        if isinstance(item, Rejected):
            ledger.reject(item.line, item.doc_id, item.reason, item.file)
        else:
            good.append(item)
    return good


def _drop_present(
    client: Client,
    index: str,
    todo: list[Record],
    ledger: Ledger,
    patience: Patience,
    run_id: str,
) -> list[Record]:
    """Leave out ids the index already holds: an earlier (killed) run's documents are not
    encoded again, and another record's id is a duplicate."""
    keep: list[Record] = []
    for start in range(0, len(todo), MGET_IDS):
        part = todo[start : start + MGET_IDS]
        stored = patience.call(fetch_origins, client, index, [r.doc_id for r in part])
        for record, source in zip(part, stored, strict=True):
            if source is None:
                keep.append(record)
                continue
            verdict = judge(record, source, run_id)
            if verdict.fate == "duplicate":
                reason = verdict.reason or "duplicate id"
                ledger.reject(record.line, record.doc_id, reason, record.file)
            else:
                ledger.already_present()
    return keep
