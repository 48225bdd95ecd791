"""Fault drills: real `dotbridge` processes against real nodes, faults injected, outcomes checked.

    python benchmarks/drills.py [--readme README.md] [--ports 9291,9292] [--seed 7]
        [--queries 10000] [--only NAME,NAME]

Nodes are dotbridge's own local nodes (bridge.nodes, from Maven Central); the model is the
tiny random DistilBERT the tests build; the corpora are synthetic and seeded, so the drills run
from a clean clone (`make drills`). Prints a table and, with --readme, writes it between
`<!-- drills:start -->` and `<!-- drills:end -->`. Exits non-zero when a drill fails.

A new drill is a function taking the Context and returning Outcome rows, registered with
`@drill(name)`; see `gateway_clients_during_node_restart` for the hook left for the gateway.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Process,
    indexed_ops,
    ingest_command,
    kill_node_hard,
    local_node,
    markdown_table,
    run_ingest,
    synthetic_corpus,
    tiny_model,
    write_block,
)

from bridge.nodes import LocalNode  # noqa: E402


@dataclass
class Outcome:
    """One row of the table: a drill (or a part of one), whether it passed, what was seen."""

    drill: str
    passed: bool | None  # None: not run (a hook)
    checked: str
    seen: str
    seconds: float = 0.0


@dataclass
class Context:
    work: Path
    model: Path
    node: LocalNode  # the drills' main node, which some drills kill
    storm_port: int
    seed: int
    queries: int

    def rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.seed}-{salt}")

    def client(self, url: str | None = None):
        from bridge.client import connect
        from bridge.config import ConnectionSettings

        return connect(ConnectionSettings(url=url or self.node.url))


Drill = Callable[[Context], list[Outcome]]
DRILLS: list[tuple[str, Drill]] = []


def drill(name: str) -> Callable[[Drill], Drill]:
    """Register a drill under a short name (for --only); drills run in registration order."""

    def register(fn: Drill) -> Drill:
        DRILLS.append((name, fn))
        return fn

    return register


class Checks:
    """Named expectations of one drill; the outcome passes when all of them hold."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(what)


def refresh_of(client, index: str) -> str | None:
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    return settings.get("refresh_interval")


def exact(client, index: str) -> tuple[int, int]:
    """(documents, distinct doc_id values) after a refresh."""
    client.indices.refresh(index=index)
    total = client.count(index=index)["count"]
    # Exact up to 40,000 distinct values (the default threshold, 3,000, only estimates above).
    agg = {"cardinality": {"field": "doc_id", "precision_threshold": 40_000}}
    body = {"size": 0, "aggs": {"ids": agg}}
    distinct = client.search(index=index, body=body)["aggregations"]["ids"]["value"]
    return total, distinct


def wait_for(client, index: str, at_least: int, proc: Process, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        ops = indexed_ops(client, index)
        if ops >= at_least:
            return ops
        time.sleep(0.05)
    return indexed_ops(client, index)


# ---- the drills ---------------------------------------------------------------------------------

KILL_CORPUS = 4000


@drill("sigkill")
def sigkills_then_a_final_run(ctx: Context) -> list[Outcome]:
    """5 SIGKILLs of ingest at seeded random moments, then a run to the end."""
    rng = ctx.rng("sigkill")
    corpus = synthetic_corpus(
        ctx.work / "kill.jsonl",
        KILL_CORPUS,
        seed=ctx.seed,
        bad_every=97,
        duplicate_every=89,
        keep_passages=True,
    )
    index, client = "drill-sigkill", ctx.client()
    client.indices.delete(index=index, ignore_unavailable=True)
    cmd = ingest_command(corpus.path, index, ctx.model, "--batch-size", 16, "--sort-window", 2)
    cmd += ["--rejects", ctx.work / "kill.rejects.jsonl"]
    moments = sorted(rng.uniform(0.0, 0.9) for _ in range(5))
    at_kill = []
    for moment in moments:
        proc = Process(cmd, ctx.node.url)
        ops = wait_for(client, index, int(moment * len(corpus.good_ids)), proc)
        ended_first = not proc.alive()
        proc.kill()
        proc.wait()
        at_kill.append(f"{ops}{' (had ended)' if ended_first else ''}")
    final = run_ingest(cmd, ctx.node.url)
    counts = final.counts()
    checks = Checks()
    checks.expect(final.returncode == 2, f"exit {final.returncode}, expected 2 (rejects)")
    checks.expect("Traceback" not in final.stderr, "a traceback")
    read, indexed = counts.get("read"), counts.get("indexed", 0)
    present, rejected = counts.get("already present", 0), counts.get("rejected", 0)
    checks.expect(read == KILL_CORPUS, f"read {read} of {KILL_CORPUS}")
    checks.expect(indexed + present + rejected == read, "counts do not add up")
    bad = len(corpus.bad_lines) + len(corpus.duplicate_lines)
    checks.expect(rejected == bad, f"rejected {rejected}, expected {bad}")
    total, distinct = exact(client, index)
    checks.expect(total == distinct == len(corpus.good_ids), f"{total} docs, {distinct} ids")
    checks.expect(refresh_of(client, index) is None, "refresh not restored")
    same = sampled_vectors_match(ctx, client, index, corpus.passages, rng)
    checks.expect(same == 20, f"{same}/20 vectors equal a fresh encoding")
    return [
        Outcome(
            "5 SIGKILLs of `dotbridge ingest` at seeded random moments, then a final run",
            not checks.failed,
            "exact count, no duplicate ids, every bad line rejected, refresh restored, "
            "20 sampled vectors = a fresh encoding",
            f"killed at {', '.join(at_kill)} docs; final run: read {read}, indexed {indexed}, "
            f"already present {present}, rejected {rejected}; {total} docs = {distinct} ids "
            f"= {len(corpus.good_ids)} good; {same}/20 vectors equal"
            + (f"; FAILED: {'; '.join(checks.failed)}" if checks.failed else ""),
        )
    ]


def sampled_vectors_match(ctx: Context, client, index: str, passages: dict, rng) -> int:
    import numpy as np

    from bridge.encoder import Encoder

    encoder = Encoder(ctx.model, device="cpu")
    sample = rng.sample(sorted(passages), 20)
    docs = client.mget(index=index, body={"ids": sample})["docs"]
    same = 0
    for doc_id, doc in zip(sample, docs, strict=True):
        fresh = encoder.encode_passages([passages[doc_id]])[0]
        stored = np.asarray(doc["_source"]["vector"], dtype=np.float32)
        same += bool(np.allclose(stored, fresh, rtol=1e-5, atol=1e-6))
    return same


NODE_CORPUS = 3000


@drill("node-restart")
def node_killed_and_restarted(ctx: Context) -> list[Outcome]:
    """`kill -9` of the node during an ingest, the node started again: nothing lost."""
    corpus = synthetic_corpus(ctx.work / "restart.jsonl", NODE_CORPUS, seed=ctx.seed + 1)
    index, client = "drill-node-restart", ctx.client()
    client.indices.delete(index=index, ignore_unavailable=True)
    cmd = ingest_command(corpus.path, index, ctx.model, "--batch-size", 16, "--sort-window", 2)
    # Patience for a restart on a busy machine (the default, 120 s, is for real outages).
    cmd += ["--max-wait", 300, "--rejects", ctx.work / "restart.rejects.jsonl"]
    proc = Process(cmd, ctx.node.url)
    ops = wait_for(client, index, NODE_CORPUS // 3, proc)
    checks = Checks()
    checks.expect(proc.alive(), "the ingest ended before the node could be killed")
    kill_node_hard(ctx.node)
    down = time.monotonic()
    ctx.node.start(timeout=300)
    down_s = time.monotonic() - down
    run = proc.wait(timeout=600)
    counts = run.counts()
    checks.expect(run.returncode == 0, f"exit {run.returncode}: {run.errors()}")
    checks.expect("Traceback" not in run.stderr, "a traceback")
    total, distinct = exact(client, index)
    checks.expect(total == distinct == NODE_CORPUS, f"{total} docs, {distinct} ids")
    checks.expect(counts.get("retried", 0) > 0, "nothing was retried")
    checks.expect(refresh_of(client, index) is None, "refresh not restored")
    return [
        Outcome(
            "node `kill -9` during ingest, node restarted",
            not checks.failed,
            "the same run finishes: exit 0, exact count, no duplicate ids, refresh restored",
            f"killed at {ops} docs, down {down_s:.0f}s; indexed {counts.get('indexed')}, "
            f"retried {counts.get('retried')}; {total} docs = {distinct} ids = {NODE_CORPUS}"
            + (f"; FAILED: {'; '.join(checks.failed)}" if checks.failed else ""),
        )
    ]


@drill("node-down")
def node_killed_for_good(ctx: Context) -> list[Outcome]:
    """`kill -9` of the node during an ingest, not restarted: one sentence, exit non-zero; the
    next run (node back) restores refresh and completes."""
    max_wait = 20
    corpus = synthetic_corpus(ctx.work / "down.jsonl", NODE_CORPUS, seed=ctx.seed + 2)
    index, client = "drill-node-down", ctx.client()
    client.indices.delete(index=index, ignore_unavailable=True)
    cmd = ingest_command(corpus.path, index, ctx.model, "--batch-size", 16, "--sort-window", 2)
    cmd += ["--max-wait", max_wait, "--rejects", ctx.work / "down.rejects.jsonl"]
    proc = Process(cmd, ctx.node.url)
    ops = wait_for(client, index, NODE_CORPUS // 3, proc)
    checks = Checks()
    checks.expect(proc.alive(), "the ingest ended before the node could be killed")
    kill_node_hard(ctx.node)
    killed = time.monotonic()
    run = proc.wait(timeout=600)
    gave_up_s = time.monotonic() - killed
    errors = run.errors()
    checks.expect(run.returncode == 1, f"exit {run.returncode}, expected 1")
    checks.expect(len(errors) == 1, f"{len(errors)} error lines")
    checks.expect("Traceback" not in run.stderr, "a traceback")
    checks.expect(gave_up_s < max_wait + 60, f"gave up after {gave_up_s:.0f}s")
    ctx.node.start(timeout=300)
    left = refresh_of(client, index)
    rerun = run_ingest(cmd, ctx.node.url)
    checks.expect(rerun.returncode == 0, f"rerun exit {rerun.returncode}: {rerun.errors()}")
    restored = refresh_of(client, index)
    checks.expect(restored is None, f"refresh {restored!r} after the rerun")
    total, distinct = exact(client, index)
    checks.expect(total == distinct == NODE_CORPUS, f"{total} docs, {distinct} ids")
    sentence = errors[0].removeprefix("Error: ") if errors else "(none)"
    return [
        Outcome(
            "node `kill -9` during ingest, node not restarted",
            not checks.failed,
            "one sentence, exit 1, within --max-wait (20 s) + a request; the next run "
            "restores refresh and completes",
            f"killed at {ops} docs; exit {run.returncode} after {gave_up_s:.0f}s: "
            f"“{sentence}”; refresh left {left!r}, after the next run {restored!r}; "
            f"{total} docs = {distinct} ids = {NODE_CORPUS}"
            + (f"; FAILED: {'; '.join(checks.failed)}" if checks.failed else ""),
        )
    ]


STORM_WORKERS = 4
STORM_CORPUS = 4000


@drill("429-storm")
def storm_of_429(ctx: Context) -> list[Outcome]:
    """A node with a write pool of 1 thread and a queue of 1 (0 would refuse every write but the
    first), and 4 `--shard` workers at once sending small bulks."""
    settings = {"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1}
    corpus = synthetic_corpus(
        ctx.work / "storm.jsonl", STORM_CORPUS, seed=ctx.seed + 3, min_words=100, max_words=300
    )
    index = "drill-429"
    checks = Checks()
    with local_node(ctx.storm_port, **settings) as node:
        client = ctx.client(node.url)
        client.indices.delete(index=index, ignore_unavailable=True)  # a node keeps its data
        procs = []
        for i in range(STORM_WORKERS):
            cmd = ingest_command(corpus.path, index, ctx.model, "--shard", f"{i}/{STORM_WORKERS}")
            cmd += ["--batch-size", 4, "--sort-window", 1, "--max-wait", 300]
            procs.append(Process(cmd, node.url, cwd=ctx.work))
        runs = [p.wait(timeout=1800) for p in procs]
        indexed = sum(r.counts().get("indexed", 0) for r in runs)
        present = sum(r.counts().get("already present", 0) for r in runs)
        retried = sum(r.counts().get("retried", 0) for r in runs)
        for run in runs:
            checks.expect(run.returncode == 0, f"exit {run.returncode}: {run.errors()}")
            checks.expect("Traceback" not in run.stderr, "a traceback")
        total, distinct = exact(client, index)
        pool = client.nodes.stats(metric="thread_pool")["nodes"]
        rejected_by_node = sum(n["thread_pool"]["write"]["rejected"] for n in pool.values())
        checks.expect(indexed == total == distinct == STORM_CORPUS, f"{indexed} indexed")
        checks.expect(present == 0, f"{present} already present in a fresh index")
        checks.expect(retried > 0 and rejected_by_node > 0, "no 429 happened")
    return [
        Outcome(
            "429 storm: write pool of 1 thread, queue of 1, 4 `--shard` workers at once",
            not checks.failed,
            "every record indexed once, the retries counted",
            f"node rejected {rejected_by_node} write tasks; workers retried {retried} items; "
            f"indexed {indexed}; {total} docs = {distinct} ids = {STORM_CORPUS}"
            + (f"; FAILED: {'; '.join(checks.failed)}" if checks.failed else ""),
        )
    ]


@drill("fuzz")
def fuzzed_queries(ctx: Context) -> list[Outcome]:
    """`--queries` fuzzed queries in every mode against the SIGKILL drill's index (or a fresh
    one): no exception but the documented bad-input error (BadInput, for a blank query)."""
    from bridge.config import MODES
    from bridge.encoder import Encoder
    from bridge.errors import BadInput
    from bridge.search import check_query, make_searcher

    client, index = ctx.client(), "drill-fuzz"
    client.indices.delete(index=index, ignore_unavailable=True)
    corpus = synthetic_corpus(ctx.work / "fuzz.jsonl", 2000, seed=ctx.seed + 4)
    run = run_ingest(ingest_command(corpus.path, index, ctx.model), ctx.node.url)
    if run.returncode != 0:
        raise RuntimeError(f"could not build the fuzz index: {run.stderr}")
    encoder = Encoder(ctx.model, device="cpu")
    queries = list(fuzz(ctx.rng("fuzz"), ctx.queries))
    rows = []
    for mode in MODES:
        started = time.monotonic()
        searcher = make_searcher(mode, client, index, encoder=None if mode == "bm25" else encoder)
        answered, bad_input, failures = 0, 0, Counter()
        examples: dict[str, str] = {}
        valid = []
        for query in queries:  # the library's own check: its BadInput is the documented error
            try:
                valid.append(check_query(query))
            except BadInput:
                bad_input += 1
        for start in range(0, len(valid), 50):
            ok, errors = attempt(searcher, valid[start : start + 50])
            answered += ok
            for query, exc in errors:
                if isinstance(exc, BadInput):
                    bad_input += 1
                    continue
                name = type(exc).__name__
                failures[name] += 1
                examples.setdefault(name, f"{query[:40]!r}: {exc}"[:160])
        failed = sum(failures.values())
        seen = f"{answered:,} answered, {bad_input:,} bad-input errors, {failed:,} other exceptions"
        if failures:
            seen += " (" + "; ".join(f"{n} x{c}: {examples[n]}" for n, c in failures.items()) + ")"
        rows.append(
            Outcome(
                f"{len(queries):,} fuzzed queries, {mode}",
                failed == 0,
                "no exception other than the documented bad-input error",
                seen,
                time.monotonic() - started,
            )
        )
    return rows


@drill("gateway-restart")
def gateway_clients_during_node_restart(ctx: Context) -> list[Outcome]:
    """HOOK for the lead: 50 concurrent gateway clients while the node restarts.

    Start the gateway (bridge/gateway) against `ctx.node`, run 50 client threads or processes
    that search through it, `kill_node_hard(ctx.node)` and `ctx.node.start()` midway, then
    return Outcome rows (every request answered or refused with the documented error, no hang).
    Until then this row says that the drill is not written yet.
    """
    return [
        Outcome(
            "50 concurrent gateway clients while the node restarts",
            None,
            "(hook: `gateway_clients_during_node_restart` in benchmarks/drills.py)",
            "not written yet: waits for the gateway",
        )
    ]


def attempt(searcher, queries: list[str]) -> tuple[int, list[tuple[str, Exception]]]:
    """Search a batch; when it fails, halve it until each failing query stands alone.
    Returns the number answered and each failing query with its exception."""
    try:
        searcher.search_many(queries, k=10)
        return len(queries), []
    except Exception as exc:  # noqa: BLE001 - attributed to its query below
        if len(queries) == 1:
            return 0, [(queries[0], exc)]
    half = len(queries) // 2
    left, right = attempt(searcher, queries[:half]), attempt(searcher, queries[half:])
    return left[0] + right[0], left[1] + right[1]


# ---- fuzzing ------------------------------------------------------------------------------------

OPERATORS = list('"*?~^():[]{}\\/!&|+-=<>') + ["AND", "OR", "NOT", "&&", "||", "*:*", "_all"]
SNIPPETS = [
    '{"query": {"match_all": {}}}',
    "'; DROP TABLE docs; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "NaN",
    "Infinity",
    "-1e309",
    "%00%ff",
    "\\u0000",
    "title:vitamin AND text:(d OR e)",
]


def fuzz(rng: random.Random, n: int) -> Iterator[str]:
    """`n` hostile queries, seeded: operators, every script, control characters, lone
    surrogates, emoji, blank ones, very long ones and very many terms."""
    from harness import WORDS

    def code_point() -> str:
        while True:
            cp = rng.choice(
                [
                    rng.randrange(0x20, 0x7F),
                    rng.randrange(0xA0, 0x3000),
                    rng.randrange(0x3000, 0xD800),
                    rng.randrange(0xE000, 0x10000),
                    rng.randrange(0x10000, 0x110000),
                    rng.randrange(0, 0x20),
                ]
            )
            if unicodedata.category(chr(cp)) != "Cs":
                return chr(cp)

    makers: list[Callable[[], str]] = [
        lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))),
        lambda: " ".join(rng.choice(OPERATORS + list(WORDS)) for _ in range(rng.randint(1, 12))),
        lambda: "".join(code_point() for _ in range(rng.randint(1, 60))),
        lambda: (
            "".join(
                rng.choice("\x00\t\n\r\x0b\x0c\x1b\x7f\u200b\u200e\u202e\ufeff ")
                for _ in range(rng.randint(1, 10))
            )
            + rng.choice(WORDS)
        ),
        lambda: rng.choice(" \t\n\r\u3000\u00a0") * rng.randint(0, 5),  # blank: bad input
        lambda: rng.choice(WORDS) + chr(rng.randrange(0xD800, 0xE000)) + rng.choice(WORDS),
        lambda: "".join(
            rng.choice(
                ["\U0001f600", "\U0001f469\u200d\U0001f52c", "\u0301", "\u05d0", "\u0627", "\u4e2d"]
            )
            for _ in range(rng.randint(1, 30))
        ),
        lambda: " ".join(rng.choice(WORDS) + str(i) for i in range(rng.randint(200, 2000))),
        lambda: "x" * rng.randint(300, 10_000),
        lambda: rng.choice(SNIPPETS),
        lambda: str(rng.uniform(-1e6, 1e6)),
        lambda: (rng.choice(WORDS) + " ") * rng.randint(500, 3000),
    ]
    for _ in range(n):
        yield rng.choice(makers)()


# ---- running ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Outcome]:
    ports = [int(p) for p in args.ports.split(",")]
    wanted = set(args.only.split(",")) if args.only else None
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp, local_node(ports[0]) as node:
        work = Path(tmp)
        ctx = Context(work, tiny_model(work / "tiny"), node, ports[1], args.seed, args.queries)
        for name, fn in DRILLS:
            if wanted is not None and name not in wanted:
                continue
            print(f"drill {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                rows = fn(ctx)
            except Exception as exc:  # noqa: BLE001 - a drill that breaks is a failed drill
                traceback.print_exc()
                rows = [Outcome(name, False, "the drill ran to its end", f"broke: {exc!r}")]
            spent = time.monotonic() - started
            for row in rows:
                row.seconds = row.seconds or spent / len(rows)
                print(f"  {verdict(row)}: {row.drill}: {row.seen}", file=sys.stderr, flush=True)
            outcomes += rows
            if node.running_pid() is None:  # a drill left the node down: the next needs it
                node.start(timeout=300)
    return outcomes


def verdict(row: Outcome) -> str:
    return {True: "pass", False: "FAIL", None: "not run"}[row.passed]


def table(outcomes: list[Outcome], seed: int) -> str:
    rows = [[o.drill, f"**{verdict(o)}**", o.checked, o.seen, f"{o.seconds:.0f}"] for o in outcomes]
    body = markdown_table(["drill", "result", "checked", "seen", "s"], rows)
    return (
        f"`make drills` (seed {seed}): real `dotbridge` processes against dotbridge's own local "
        "OpenSearch nodes, the tests' tiny model, synthetic seeded corpora.\n\n" + body
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="Write the table into this README.")
    parser.add_argument("--ports", default="9291,9292", help="The main node's, the storm node's.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=10_000, help="Fuzzed queries per mode.")
    parser.add_argument(
        "--only", help="Comma-separated drill names: " + ", ".join(n for n, _ in DRILLS)
    )
    args = parser.parse_args()
    outcomes = run(args)
    text = table(outcomes, args.seed)
    print(text)
    if args.readme:
        write_block(args.readme, "drills", text)
    sys.exit(0 if all(o.passed is not False for o in outcomes) else 1)


if __name__ == "__main__":
    main()
