"""Three `--shard i/3` processes filling one index at the same time, with a kill in between."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from ingest.readers import Record, read_records
from tests.ingest_helpers import (
    SCIFACT,
    cli_env,
    count,
    distinct_ids,
    indexed_ops,
    ingest_command,
    refresh_interval,
    summary_counts,
)

pytestmark = pytest.mark.integration

WORKERS = 3
GOOD = 600


def build_corpus(path) -> tuple[int, set[str], list[tuple[int, int]], set[int]]:
    """SciFact lines, then copies of some ids on lines another worker reads, then bad lines.

    Returns the number of lines, the distinct good ids, the (first, copy) line pairs of each
    duplicated id, and the line numbers of the bad lines.
    """
    originals = [r for r in read_records(SCIFACT, limit=GOOD) if isinstance(r, Record)]
    lines = [json.dumps({"_id": r.doc_id, "title": r.title, "text": r.text}) for r in originals]
    pairs = []
    for k, source_line in enumerate((1, 5, 9, 14, 100, 101, 302, 450)):
        copy_line = len(lines) + 1
        if (source_line - copy_line) % WORKERS == 0:
            source_line += 1  # the copy must go to another worker than the original
        record = originals[source_line - 1]
        text = record.text if k % 2 == 0 else f"another text for {record.doc_id}"
        lines.append(json.dumps({"_id": record.doc_id, "text": text}))
        pairs.append((source_line, copy_line))
    bad = []
    junk_lines = ("{not json", json.dumps({"_id": "e", "text": ""}), '{"_id": "\\ud800"}')
    for junk in junk_lines:
        lines.append(junk)
        bad.append(len(lines))
    lines += [json.dumps({"_id": f"new{i}", "text": f"a new passage {i}"}) for i in range(7)]
    path.write_text("\n".join(lines) + "\n")
    ids = {r.doc_id for r in originals} | {f"new{i}" for i in range(7)}
    return len(lines), ids, pairs, set(bad)


def start_workers(corpus, index, model_dir, tmp_path, settings):
    procs = []
    for i in range(WORKERS):
        cmd = ingest_command(corpus, index, model_dir, "--shard", f"{i}/{WORKERS}")
        cmd += ["--batch-size", "8", "--sort-window", "1"]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=tmp_path,  # the default rejects files land here, one per worker
                env=cli_env(settings),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def test_three_shard_processes_fill_one_index_with_a_kill_in_between(
    os_client, opensearch_settings, index_name, tiny_model_dir, tmp_path
):
    corpus = tmp_path / "corpus.jsonl"
    n_lines, ids, pairs, bad = build_corpus(corpus)

    # Round 1: all three at once; worker 1 is killed mid-run.
    procs = start_workers(corpus, index_name, tiny_model_dir, tmp_path, opensearch_settings)
    deadline = time.monotonic() + 240
    while indexed_ops(os_client, index_name) < 60 and time.monotonic() < deadline:
        assert procs[1].poll() is None, f"worker 1 ended before it could be killed: {procs[1]}"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    for i in (0, 2):
        out, err = procs[i].communicate(timeout=600)
        assert procs[i].returncode in (0, 2), out + err
    assert count(os_client, index_name) < len(ids)  # worker 1's share is incomplete

    # Round 2: all three at once again, to the end.
    procs = start_workers(corpus, index_name, tiny_model_dir, tmp_path, opensearch_settings)
    outputs = [p.communicate(timeout=600) for p in procs]
    totals = [0, 0, 0, 0]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode in (0, 2), out + err
        assert "Traceback" not in err, err
        read, indexed, rejected, present = summary_counts(out)
        assert read == indexed + rejected + present
        totals = [t + c for t, c in zip(totals, (read, indexed, rejected, present), strict=True)]
    assert totals[0] == n_lines  # the summaries add up to the input
    assert totals[1] > 0 and totals[3] > 0  # worker 1 finished its share, the rest was there

    # Exactly the distinct good ids, each once, and refresh as it was (never left at -1).
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(ids)
    assert refresh_interval(os_client, index_name) is None

    # Every bad line and one line of each duplicated id in the rejects, across the 3 files.
    rejects = []
    for i in range(WORKERS):
        path = tmp_path / f"{index_name}.shard-{i}-of-{WORKERS}.rejects.jsonl"
        if path.exists():
            rejects += [json.loads(line) for line in path.read_text().splitlines()]
    lines = [r["line"] for r in rejects]
    assert len(lines) == len(set(lines)) == totals[2] == len(bad) + len(pairs)
    assert bad <= set(lines)
    for first, copy in pairs:
        loser = first if first in lines else copy
        winner = copy if loser == first else first
        assert (first in lines) != (copy in lines), (first, copy)
        reason = next(r["reason"] for r in rejects if r["line"] == loser)
        assert reason == f"duplicate id in input (line {winner} holds it)"
        doc_id = next(r["id"] for r in rejects if r["line"] == loser)
        stored = os_client.get(index=index_name, id=doc_id)["_source"]
        assert stored["ingest"]["line"] == winner  # the kept record is the one not rejected
