"""Where every record's fate is written: the counts, the rejects file and the progress bar."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bridge.errors import BadInput, RejectedRecords

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one worker per file
    fcntl = None  # type: ignore[assignment]


@dataclass
class IngestStats:
    """What a run did with its input: read = indexed + rejected + already present."""

    read: int = 0
    indexed: int = 0
    rejected: int = 0
    already_present: int = 0
    truncated: int = 0
    encoded: int = 0
    retried: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0
    index_s: float = 0.0
    startup_s: float = 0.0  # loading the model (or starting Ray and its workers), before wall
    rejects_path: Path | None = None

    def summary(self) -> str:
        startup = f", start-up {self.startup_s:.1f}s" if self.startup_s else ""
        return (
            f"read {self.read}, indexed {self.indexed}, rejected {self.rejected}, "
            f"already present {self.already_present}, truncated {self.truncated}, "
            f"encoded {self.encoded}, retried {self.retried}; "
            f"wall {self.wall_s:.1f}s, encode {self.encode_s:.1f}s, index {self.index_s:.1f}s"
            f"{startup}"
        )

    def raise_for_rejects(self) -> None:
        """Raise RejectedRecords (exit status 2) when any record was rejected: the run is done,
        but not all of its input is in the index."""
        if self.rejected:
            raise RejectedRecords(
                f"{self.rejected} of {self.read} records were rejected; "
                f"reasons in {self.rejects_path}."
            )


def default_rejects_path(index: str, shard_index: int = 0, shard_count: int = 1) -> Path:
    """`INDEX.rejects.jsonl` in the working directory; one file per `--shard` worker."""
    if shard_count > 1:
        return Path(f"{index}.shard-{shard_index}-of-{shard_count}.rejects.jsonl")
    return Path(f"{index}.rejects.jsonl")


class RejectsFile:
    """JSONL of rejected records (line, id, reason) of this run, held by this run alone.

    The file is locked for the run, so a second worker given the same path is refused at once
    instead of wiping this one's rejects; it is emptied when taken and removed at the end when
    nothing was rejected.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._lock = threading.Lock()
        self._fh: Any = self._take(self.path)

    @staticmethod
    def _take(path: Path) -> Any:
        while True:
            try:
                fh = path.open("a", encoding="utf-8")
            except OSError as exc:
                raise BadInput(
                    f"Cannot write the rejects file {str(path)!r} ({exc.strerror}): "
                    "give another --rejects path."
                ) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    fh.close()
                    raise BadInput(
                        f"The rejects file {str(path)!r} is in use by another ingest run: give "
                        "each --shard worker its own --rejects path (or leave it out)."
                    ) from None
            try:
                same = os.fstat(fh.fileno()).st_ino == path.stat().st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed while we opened it
                fh.truncate(0)  # the file describes this run only
                return fh
            fh.close()

    def write(self, line: int, doc_id: str | None, reason: str, file: str | None = None) -> None:
        """One rejected line; `file` names the input it is in when a run reads several."""
        entry = {"line": line, "id": doc_id, "reason": reason}
        if file is not None:
            entry = {"file": file, **entry}
        with self._lock:
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if not self.count:
                self.path.unlink(missing_ok=True)  # still locked: nobody else uses it
            self._fh.close()


class Ledger:
    """The counts, the rejects file and the progress bar of one run, updated under one lock:
    the main thread triages and encodes while the bulk thread indexes."""

    def __init__(self, stats: IngestStats, rejects: RejectsFile, bar: tqdm) -> None:
        self.stats, self.rejects, self.bar = stats, rejects, bar
        self._lock = threading.Lock()

    def read(self, count: int = 1) -> None:
        with self._lock:
            self.stats.read += count

    def reject(self, line: int, doc_id: str | None, reason: str, file: str | None = None) -> None:
        with self._lock:
            self.rejects.write(line, doc_id, reason, file)
            self.stats.rejected += 1
            self.bar.update(1)

    def indexed(self, count: int = 1) -> None:
        with self._lock:
            self.stats.indexed += count
            self.bar.update(count)

    def already_present(self, count: int = 1) -> None:
        with self._lock:
            self.stats.already_present += count
            self.bar.update(count)

    def encoded(self, count: int, truncated: int, seconds: float) -> None:
        with self._lock:
            self.stats.encoded += count
            self.stats.truncated += truncated
            self.stats.encode_s += seconds

    def index_time(self, seconds: float) -> None:
        with self._lock:
            self.stats.index_s += seconds

    def retried(self, count: int) -> None:
        """Items sent again after a transient failure (429, 5xx, a dropped connection)."""
        with self._lock:
            self.stats.retried += count
