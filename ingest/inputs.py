"""Several inputs (files, glob patterns) read as one stream of records, in parallel blocks.

One input is read as it always was (`readers.read_records`, records without a file name).
Several are read by up to READ_THREADS threads at once, a file per thread at a time, handed over
in blocks of BLOCK lines as they are ready: within a file the lines keep their order, files
interleave. gzip inflation and file reads run outside the GIL, so compressed inputs gain most.

Line numbers stay those of the line in its own file, and every record and reject of a run with
several inputs names its file (`Record.file`, the path as given, normalised): a reject says
`{"file": "part-2.jsonl.gz", "line": 7, ...}`, a line a user can open. The origin stored with
each document keeps the file too, so a rerun tells its own earlier documents from another
file's record under the same id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from bridge.errors import BadInput
from ingest.readers import Fields, Record, RecordStream, Rejected, Shard, read_records

READ_THREADS = 4
BLOCK = 1024
"""Lines handed over at once: few enough to keep memory flat, many enough to cost little."""
_DONE = object()


def expand_inputs(corpus: str | Path | Sequence[str | Path]) -> list[str]:
    """The input files of a run: each argument a file, a glob pattern (its matches, sorted;
    `**` crosses folders), or `-` for stdin (alone). One sentence for a pattern that matches
    nothing or a file given twice."""
    args = [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
    if not args:
        raise BadInput("No input given: name a corpus file, several, a glob pattern, or -.")
    files: list[str] = []
    for arg in map(str, args):
        if arg == "-" or Path(arg).is_file() or not glob.has_magic(arg):
            files.append(arg)  # a missing path is reported, with its name, when it is read
            continue
        matches = sorted(p for p in glob.glob(arg, recursive=True) if Path(p).is_file())
        if not matches:
            raise BadInput(
                f"No file matches {arg!r}: check the pattern (and quote it, so that the "
                "shell leaves it to dotbridge)."
            )
        files += matches
    if "-" in files and len(files) > 1:
        raise BadInput(
            "Standard input (-) cannot be read together with other inputs: give it alone."
        )
    seen: dict[str, str] = {}
    for name in files:
        key = os.path.realpath(name) if name != "-" else name
        if key in seen:
            raise BadInput(
                f"Input {name!r} is given twice (also as {seen[key]!r}): every record would be "
                "a duplicate of itself; give each file once."
            )
        seen[key] = name
    return [name if name == "-" else os.path.normpath(name) for name in files]


def read_inputs(
    files: Sequence[str],
    *,
    fmt: str = "auto",
    fields: Fields | None = None,
    shard: Shard | None = None,
    limit: int | None = None,
) -> RecordStream | InputStream:
    """The records of `files` (from `expand_inputs`): one file's stream as it is, several read
    in parallel blocks. Every file is opened and checked now (format, JSON Lines), so an
    unusable one is reported before anything else happens. `limit` counts lines per file."""
    fields, shard = fields or Fields(), shard or Shard()
    if len(files) == 1:
        return read_records(files[0], fmt=fmt, fields=fields, shard=shard, limit=limit)
    for name in files:
        read_records(name, fmt=fmt, fields=fields, shard=shard, limit=limit).close()
    return InputStream(files, fmt=fmt, fields=fields, shard=shard, limit=limit)


class InputStream:
    """The records of several files, read by a few threads in blocks; iterate once.

    `nonblank_lines` counts the non-blank lines of every file read to its end, so that, once
    the stream is exhausted, inputs without a single record can be told from a `--shard` worker
    that got none.
    """

    def __init__(
        self,
        files: Sequence[str],
        *,
        fmt: str,
        fields: Fields,
        shard: Shard,
        limit: int | None,
        threads: int = READ_THREADS,
        block: int = BLOCK,
    ) -> None:
        self.files = list(files)
        self.nonblank_lines = 0
        self._options = {"fmt": fmt, "fields": fields, "shard": shard, "limit": limit}
        self._block = block
        self._todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        for name in self.files:
            self._todo.put(name)
        count = max(1, min(threads, len(self.files)))
        self._out: queue.Queue = queue.Queue(maxsize=2 * count)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, name=f"reader-{i}", daemon=True)
            for i in range(count)
        ]
        self._items = self._iterate()

    def __iter__(self) -> Iterator[Record | Rejected]:
        return self._items

    def __next__(self) -> Record | Rejected:
        return next(self._items)

    def close(self) -> None:
        self._items.close()

    def _iterate(self) -> Iterator[Record | Rejected]:
        for thread in self._threads:
            thread.start()
        running = len(self._threads)
        try:
            while running:
                got = self._out.get()
                if got is _DONE:
                    running -= 1
                elif isinstance(got, BaseException):
                    raise got
                else:
                    yield from got
        finally:
            self._stop.set()
            while any(t.is_alive() for t in self._threads):  # unblock readers waiting to put
                with contextlib.suppress(queue.Empty):
                    self._out.get(timeout=0.05)

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    name = self._todo.get_nowait()
                except queue.Empty:
                    break
                self._read_file(name)
        except BaseException as exc:  # raised to the consumer, in its thread
            self._put(exc)
        finally:
            self._put(_DONE)

    def _read_file(self, name: str) -> None:
        stream = read_records(name, **self._options)  # type: ignore[arg-type]
        try:
            block: list[Record | Rejected] = []
            for item in stream:
                block.append(dataclasses.replace(item, file=name))
                if len(block) == self._block:
                    if not self._put(block):
                        return
                    block = []
            if block:
                self._put(block)
        finally:
            stream.close()
            with self._lock:
                self.nonblank_lines += stream.nonblank_lines

    def _put(self, item: object) -> bool:
        """Hand `item` over unless the consumer stopped; False when it did."""
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
