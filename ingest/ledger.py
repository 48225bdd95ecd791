"""Where every record's fate is written: the counts, the rejects file and the progress bar."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm


@dataclass
class IngestStats:
    """What a run did with its input: read = indexed + rejected + already present."""

    read: int = 0
    indexed: int = 0
    rejected: int = 0
    already_present: int = 0
    truncated: int = 0
    encoded: int = 0
    wall_s: float = 0.0
    encode_s: float = 0.0
    index_s: float = 0.0
    rejects_path: Path | None = None

    def summary(self) -> str:
        return (
            f"read {self.read}, indexed {self.indexed}, rejected {self.rejected}, "
            f"already present {self.already_present}, truncated {self.truncated}, "
            f"encoded {self.encoded}; "
            f"wall {self.wall_s:.1f}s, encode {self.encode_s:.1f}s, index {self.index_s:.1f}s"
        )


def default_rejects_path(index: str) -> Path:
    """`INDEX.rejects.jsonl` in the working directory."""
    return Path(f"{index}.rejects.jsonl")


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


class Ledger:
    """The counts, the rejects file and the progress bar of one run, updated under one lock:
    the main thread triages and encodes while the bulk thread indexes."""

    def __init__(self, stats: IngestStats, rejects: RejectsFile, bar: tqdm) -> None:
        self.stats, self.rejects, self.bar = stats, rejects, bar
        self._lock = threading.Lock()

    def read(self, count: int = 1) -> None:
        with self._lock:
            self.stats.read += count

    def reject(self, line: int, doc_id: str | None, reason: str) -> None:
        self.rejects.write(line, doc_id, reason)
        with self._lock:
            self.stats.rejected += 1
            self.bar.update(1)

    def indexed(self, count: int = 1) -> None:
        with self._lock:
            self.stats.indexed += count
            self.bar.update(count)

    def already_present(self, count: int) -> None:
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
