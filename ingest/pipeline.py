"""The write path: records -> batches -> encoder -> bulk, pipelined, with rejects and resume.

Encoding runs in the calling thread while a second thread indexes the previous batch, so wall
time approaches the larger of encode and index time. Documents are indexed under their own id,
and each batch first asks which of its ids are already there (a realtime multi-get, which needs
no refresh): a run killed at any point and started again indexes the rest and encodes nothing
twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from opensearchpy import OpenSearch
from tenacity import Retrying
from tqdm import tqdm

from bridge.indexes import IndexOptions, IndexSpec, ensure_index, refresh_paused
from ingest.bulk import BulkWriter
from ingest.ledger import IngestStats, Ledger, RejectsFile, default_rejects_path
from ingest.readers import Fields, Record, Rejected, Shard, read_records

if TYPE_CHECKING:
    from bridge.encoder import Encoder


def ingest_corpus(
    corpus: str | Path,
    *,
    client: OpenSearch,
    index: str,
    encoder: Encoder,
    fmt: str = "auto",
    fields: Fields | None = None,
    shard: Shard | None = None,
    limit: int | None = None,
    rejects: Path | None = None,
    options: IndexOptions | None = None,
    progress: bool | None = None,
) -> IngestStats:
    """Read a corpus file (or '-', stdin) and ingest it; rejects to `INDEX.rejects.jsonl`.

    The one wiring of reader, encoder and pipeline that the CLI, the demo, the evaluation and
    the benchmark share.
    """
    records = read_records(
        corpus, fmt=fmt, fields=fields or Fields(), shard=shard or Shard(), limit=limit
    )
    rejects_path = rejects or default_rejects_path(index)
    stats = ingest(
        records,
        client=client,
        index=index,
        encoder=encoder,
        rejects=RejectsFile(rejects_path),
        options=options,
        batch_size=encoder.batch_size,
        progress=progress,
    )
    stats.rejects_path = rejects_path
    return stats


def ingest(
    records: Iterable[Record | Rejected],
    *,
    client: OpenSearch,
    index: str,
    encoder: Encoder,
    rejects: RejectsFile,
    options: IndexOptions | None = None,
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
    ledger = Ledger(stats, rejects, bar)
    writer = BulkWriter(client, index, spec.vector_field, ledger, max_retry_seconds)
    seen: set[str] = set()
    try:
        with refresh_paused(client, index):
            writer.start()
            try:
                for batch in _batches(records, batch_size):
                    todo = _triage(batch, seen, ledger)
                    todo = _drop_present(client, index, todo, ledger, writer.retrying.copy())
                    if not todo:
                        continue
                    t0 = time.perf_counter()
                    vectors, truncated = encoder.encode_passages(
                        [r.passage for r in todo], return_truncated=True
                    )
                    ledger.encoded(
                        len(todo), int(np.count_nonzero(truncated)), time.perf_counter() - t0
                    )
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


def _triage(batch: Sequence[Record | Rejected], seen: set[str], ledger: Ledger) -> list[Record]:
    """Count what was read; reject bad lines and ids seen before in this input."""
    good: list[Record] = []
    for item in batch:
        ledger.read()
        if isinstance(item, Rejected):
            ledger.reject(item.line, item.doc_id, item.reason)
        elif item.doc_id in seen:
            ledger.reject(item.line, item.doc_id, "duplicate id in input")
        else:
            seen.add(item.doc_id)
            good.append(item)
    return good


def _drop_present(
    client: OpenSearch, index: str, todo: list[Record], ledger: Ledger, retrying: Retrying
) -> list[Record]:
    """Leave out documents an earlier (killed) run already indexed: they are not encoded again."""
    if not todo:
        return todo
    ids = [r.doc_id for r in todo]
    resp = retrying(client.mget, index=index, body={"ids": ids}, _source=False, realtime=True)
    found = {d["_id"] for d in resp["docs"] if d.get("found")}
    if found:
        ledger.already_present(len(found))
    return [r for r in todo if r.doc_id not in found]
