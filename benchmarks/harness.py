"""What the ingest benchmarks and the fault drills share: the tests' tiny model, real nodes,
synthetic corpora, `dotbridge ingest` as a measured process, and README blocks."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bridge.nodes import LocalNode  # noqa: E402

# The ingest tests' command line and indexing counter, shared with the drills and benchmarks.
from tests.ingest_helpers import indexed_ops, ingest_command  # noqa: E402, F401

WORDS = (
    "protein",
    "cell",
    "gene",
    "cancer",
    "risk",
    "study",
    "patients",
    "effect",
    "dose",
    "vitamin",
    "blood",
    "trial",
    "brain",
    "heart",
    "liver",
    "immune",
    "response",
    "model",
    "data",
    "signal",
    "pathway",
    "receptor",
    "growth",
    "factor",
    "tumour",
    "expression",
    "mutation",
    "infection",
    "virus",
    "bacteria",
    "therapy",
    "drug",
    "levels",
    "increase",
    "decrease",
    "association",
    "cohort",
    "mice",
    "human",
    "tissue",
    "sample",
    "analysis",
    "function",
    "role",
    "mechanism",
)


def tiny_model(folder: Path) -> Path:
    """The seeded 2-layer DistilBERT the tests build (bert-base-uncased vocabulary)."""
    from bridge.config import minilm_model_dir
    from tests.model_fixtures import build_tiny_model

    if not (folder / "config.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        build_tiny_model(folder, minilm_model_dir())
    return folder


@contextlib.contextmanager
def local_node(port: int, **extra_settings: object) -> Iterator[LocalNode]:
    """A real node of dotbridge's own (the local node code) on `port`, stopped afterwards."""
    node = LocalNode(port=port, heap="512m", extra_settings=extra_settings)
    node.start(timeout=300)
    try:
        yield node
    finally:
        node.stop()


def cluster(url: str | None, port: int) -> contextlib.AbstractContextManager[str]:
    """OPENSEARCH_URL's cluster when given, else a local node on `port`: yields its URL."""

    @contextlib.contextmanager
    def given() -> Iterator[str]:
        yield url  # type: ignore[misc]

    @contextlib.contextmanager
    def started() -> Iterator[str]:
        with local_node(port) as node:
            yield node.url

    return given() if url else started()


@dataclass
class Corpus:
    """A synthetic JSONL corpus and what an ingest of it must end with."""

    path: Path
    lines: int
    good_ids: set[str]
    bad_lines: set[int] = field(default_factory=set)
    duplicate_lines: set[int] = field(default_factory=set)  # later copies of an id
    passages: dict[str, str] = field(default_factory=dict)  # id -> what was encoded


def synthetic_corpus(
    path: Path,
    n: int,
    *,
    seed: int = 0,
    bad_every: int = 0,
    duplicate_every: int = 0,
    min_words: int = 8,
    max_words: int = 200,
    keep_passages: bool = False,
) -> Corpus:
    """`n` lines of BEIR-style JSONL with MS MARCO-like ids and lengths that vary (so padding
    matters); every `bad_every`-th line broken, every `duplicate_every`-th an earlier id."""
    rng = random.Random(seed)
    corpus = Corpus(path, n, set())
    ids: list[str] = []
    with path.open("w", encoding="utf-8") as out:
        for line in range(1, n + 1):
            if bad_every and line % bad_every == 0:
                out.write(rng.choice(('{"_id": "broken', '{"_id": "e", "text": ""}', "[]")) + "\n")
                corpus.bad_lines.add(line)
                continue
            if duplicate_every and ids and line % duplicate_every == 0:
                doc_id = rng.choice(ids)
                corpus.duplicate_lines.add(line)
            else:
                doc_id = str(line * 2_654_435_761 % 10**9)  # unique, in no particular order
                ids.append(doc_id)
                corpus.good_ids.add(doc_id)
            words = rng.randint(min_words, max_words)
            text = " ".join(rng.choice(WORDS) for _ in range(words))
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6))).capitalize()
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
            if keep_passages and line not in corpus.duplicate_lines:
                corpus.passages[doc_id] = f"{title} {text}" if title else text
    return corpus


@dataclass
class Run:
    """One finished `dotbridge ingest` process."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float

    def counts(self) -> dict[str, int]:
        """The summary line's counts (read, indexed, rejected, already present, retried...)."""
        pairs = re.findall(
            r"(read|indexed|rejected|already present|encoded|retried) (\d+)", self.stdout
        )
        return {name: int(value) for name, value in pairs}

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]


class Process:
    """A started ingest process whose peak RSS is followed (VmHWM) until it ends."""

    def __init__(self, cmd: Sequence[str], url: str, cwd: Path | None = None, **env: str) -> None:
        environment = {**os.environ, "OPENSEARCH_URL": url, "PYTHONPATH": str(REPO), **env}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(part) for part in cmd],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.peak_kb = self.rss_kb = 0
        self._watch = threading.Thread(target=self._follow_rss, daemon=True)
        self._watch.start()

    def _follow_rss(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        self.rss_kb = int(line.split()[1])
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()

    def wait(self, timeout: float | None = None) -> Run:
        out, err = self.proc.communicate(timeout=timeout)
        self._watch.join()
        wall = time.monotonic() - self.started
        return Run(self.proc.returncode, out, err, wall, self.peak_kb / 1024)


def run_ingest(cmd: Sequence[str], url: str, **kwargs: object) -> Run:
    return Process(cmd, url, **kwargs).wait()  # type: ignore[arg-type]


def write_block(readme: Path, name: str, block: str) -> None:
    """Put `block` between `<!-- name:start -->` and `<!-- name:end -->` in the README, which
    must have both (a benchmark never appends a section of its own)."""
    from bridge.report import replace_between_markers

    text = readme.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} markers")
    readme.write_text(replace_between_markers(text, block, start=start, end=end), encoding="utf-8")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped stacks of vectors."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def kill_node_hard(node: LocalNode, timeout: float = 30.0) -> None:
    """`kill -9` of a node's whole process group (no shutdown, no flush), until its port is free."""
    import signal
    import socket

    pid = node.running_pid()
    if pid is None:
        raise RuntimeError(f"no node runs on port {node.port}")
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            listening = sock.connect_ex(("127.0.0.1", node.port)) == 0
        if node.running_pid() is None and not listening:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the node on port {node.port} did not die")
