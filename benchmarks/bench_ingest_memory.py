"""Ingest memory against corpus size: RSS of `dotbridge ingest` as 5k, 10k, 25k, 50k records
go in, and the peak of a 5k and of a 50k run.

    python benchmarks/bench_ingest_memory.py [--size 50000] [--port 9291]
        [--baseline /path/to/another/checkout]

Synthetic MS MARCO-like records (numeric ids, 8 to 200 words), the tests' tiny model, a real
node (OPENSEARCH_URL, else a local node on --port). Every run is a fresh `dotbridge ingest`
process into a fresh index, its RSS followed from outside (/proc: VmRSS, VmHWM) and read when
the node has indexed 5k, 10k, 25k... documents. With --baseline the same runs are made with
another checkout's code (e.g. main, which kept a set of seen ids). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    REPO,
    Process,
    cluster,
    indexed_ops,
    ingest_command,
    markdown_table,
    synthetic_corpus,
    tiny_model,
)


def seen_set_mb(ids: set[str]) -> float:
    """What a set holding these ids costs in this Python: the memory the old pipeline grew by."""
    return (sys.getsizeof(ids) + sum(sys.getsizeof(i) for i in ids)) / 2**20


def follow(process: Process, client, index: str, marks: list[int]) -> list[float]:
    """RSS in MB when the node has indexed each mark (the last one: at the end)."""
    seen: list[float] = []
    while process.alive() and len(seen) < len(marks) - 1:
        if indexed_ops(client, index) >= marks[len(seen)]:
            seen.append(process.rss_kb / 1024)
        time.sleep(0.1)
    last = process.rss_kb / 1024  # just before the end
    return [*seen, *([last] * (len(marks) - len(seen)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--port", type=int, default=9291)
    parser.add_argument("--baseline", type=Path, help="Another checkout to run the same way.")
    args = parser.parse_args()
    marks = [m for m in (5_000, 10_000, 25_000) if m < args.size] + [args.size]
    from bridge.client import connect
    from bridge.config import ConnectionSettings

    code = {"this branch": REPO}
    if args.baseline:
        code[f"baseline ({args.baseline})"] = args.baseline.resolve()
    rows = []
    url_given = os.environ.get("OPENSEARCH_URL")
    with tempfile.TemporaryDirectory() as tmp, cluster(url_given, args.port) as url:
        work = Path(tmp)
        model = tiny_model(work / "tiny")
        client = connect(ConnectionSettings(url=url))
        big = synthetic_corpus(work / "big.jsonl", args.size, seed=1)
        small = synthetic_corpus(work / "small.jsonl", marks[0], seed=1)  # big's first lines
        for label, checkout in code.items():
            row: list[object] = [label]
            peaks = []
            for corpus, n in ((small, marks[0]), (big, args.size)):
                index = f"bench-memory-{n}"
                client.indices.delete(index=index, ignore_unavailable=True)
                cmd = ingest_command(corpus.path, index, model, "--rejects", work / "r.jsonl")
                process = Process(cmd, url, cwd=work, PYTHONPATH=str(checkout))
                rss = follow(process, client, index, marks) if n == args.size else []
                run = process.wait()
                if run.returncode != 0 or run.counts().get("indexed") != n:
                    raise SystemExit(f"{label}, {n}: {run.stdout}{run.stderr}")
                client.indices.delete(index=index)
                peaks.append(run.peak_rss_mb)
                row += [f"{value:.0f}" for value in rss]
                print(f"{label} {n}: peak {run.peak_rss_mb:.0f} MB, RSS {rss}", file=sys.stderr)
            rows.append([*row, *(f"{p:.0f}" for p in peaks)])
        ids = {str(i * 2_654_435_761 % 10**9) for i in range(1, args.size + 1)}
    header = ["code", *(f"RSS at {m // 1000}k docs (MB)" for m in marks)]
    header += [f"peak, {marks[0] // 1000}k run", f"peak, {args.size // 1000}k run"]
    print(markdown_table(header, rows))
    per_id = seen_set_mb(ids) / len(ids)
    print(
        f"\nA set of {len(ids):,} such ids takes {seen_set_mb(ids):.1f} MB here "
        f"({per_id * 8_841_823 / 1024:.2f} GB for the 8.8M MS MARCO passages)."
    )


if __name__ == "__main__":
    main()
