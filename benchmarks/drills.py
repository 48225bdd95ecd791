"""Fault drills: real `dotbridge` processes against real nodes, faults injected, outcomes checked.

    python benchmarks/drills.py [--readme docs/drills.md] [--ports 9291,9292[,GATEWAY]] [--seed 7]
        [--queries 10000] [--only NAME,NAME]

Nodes are dotbridge's own local nodes (bridge.nodes, from Maven Central); the model is the
tiny random DistilBERT the tests build; the corpora are synthetic and seeded, so the drills run
from a clean clone (`make drills`). Prints a table and, with --readme, writes it between
`<!-- drills:start -->` and `<!-- drills:end -->`. Exits non-zero when a drill fails.

A new drill is a function taking the Context and returning Outcome rows, registered with
`@drill(name)`.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
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

from bridge.config import ConnectionSettings  # noqa: E402
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
    gateway_port: int | None = None  # the gateway drill's `dotbridge serve` (None: a free one)

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


GATEWAY_CLIENTS = 50
GATEWAY_CORPUS = 1000
CLIENT_TIMEOUT = 30.0  # seconds a client waits for any answer: longer is a hang
THINK_S = 0.1  # between one client's requests: continuous, without starving the node's restart
BEFORE_S = 10.0
DOWN_S = 10.0  # the node stays dead this long before it is started again
RECOVERY_BOUND = 30.0  # after the node is healthy, every client has its 200s back within this
AFTER_S = 10.0  # all clients keep searching this long after they recovered
NEURAL_TEXTS = [
    "vitamin dose in patients",
    "gene expression in tumour tissue",
    "immune response to virus infection",
    "drug therapy for heart risk",
    "brain signal pathway in mice",
]


@dataclass
class Answer:
    """One request of a gateway client: when it was sent and answered, and what came back."""

    client: int
    kind: str  # search, health, neural
    sent: float
    done: float
    status: str  # the HTTP status, or timeout / refused / the exception's name
    same_ids: bool | None = None  # neural 200s: the top 10 equal the reference


def gateway_client(
    number: int, base: str, index: str, reference: dict[str, list[str]], stop: threading.Event
) -> list[Answer]:
    """One client: a plain `match` search, `_cat/health` and a neural search in turn, on one
    keep-alive session (no retries), until told to stop."""
    import requests

    kinds = ("search", "health", "neural")
    answers: list[Answer] = []
    with requests.Session() as session:
        turn = number
        while not stop.is_set():
            kind = kinds[turn % 3]
            text = NEURAL_TEXTS[turn % len(NEURAL_TEXTS)]
            if kind == "search":
                body = {"query": {"match": {"text": text.split()[0]}}, "size": 10}
                call = partial(session.post, f"{base}/{index}/_search", json=body)
            elif kind == "health":
                call = partial(session.get, f"{base}/_cat/health?format=json")
            else:
                body = {"query": {"neural": {"vector": {"query_text": text, "k": 10}}}}
                call = partial(session.post, f"{base}/{index}/_search", json=body)
            sent = time.monotonic()
            same = None
            try:
                resp = call(timeout=CLIENT_TIMEOUT)
                status = str(resp.status_code)
                if kind == "neural" and resp.status_code == 200:
                    same = hit_ids(resp.json()) == reference[text]
            except requests.Timeout:
                status = "timeout"
            except requests.ConnectionError:
                status = "refused"  # the gateway itself did not take or finish the request
            except Exception as exc:  # noqa: BLE001 - counted as what it is
                status = type(exc).__name__
            answers.append(Answer(number, kind, sent, time.monotonic(), status, same))
            turn += 1
            stop.wait(THINK_S)
    return answers


def hit_ids(answer: dict) -> list[str]:
    return [hit["_id"] for hit in answer["hits"]["hits"]]


def first_listening(port: int, stop: threading.Event) -> list[float]:
    """Poll a port until it accepts a connection: [the moment], or [] if stopped."""
    import socket

    while not stop.is_set():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return [time.monotonic()]
        time.sleep(0.05)
    return []


def tally(answers: list[Answer]) -> str:
    counts = Counter(a.status for a in answers)
    return ", ".join(f"{status} x{n:,}" for status, n in sorted(counts.items())) or "none"


@drill("gateway-restart")
def gateway_clients_during_node_restart(ctx: Context) -> list[Outcome]:
    """50 concurrent clients of `dotbridge serve` (pass-through searches, `_cat/health`, neural
    searches) while the node behind it is killed with `kill -9` and started again: only 502 or
    503 while it is down, every client back to 200 and the same neural hits after."""
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    import requests

    from tests.gateway_fixtures import start_gateway, stop, wait_ready

    index, client = "drill-gateway", ctx.client()
    client.indices.delete(index=index, ignore_unavailable=True)
    corpus = synthetic_corpus(ctx.work / "gateway.jsonl", GATEWAY_CORPUS, seed=ctx.seed + 5)
    built = run_ingest(
        ingest_command(corpus.path, index, ctx.model, "--pooling", "mean"), ctx.node.url
    )
    if built.returncode != 0:
        raise RuntimeError(f"could not build the gateway index: {built.stderr}")
    client.indices.flush(index=index)  # on disk: the restarted node serves the same segments
    log = ctx.work / "serve.log"
    settings = ConnectionSettings(url=ctx.node.url)
    proc, base = start_gateway(settings, ctx.model, log, port=ctx.gateway_port)
    checks = Checks()
    try:
        try:
            wait_ready(proc, base, log)
        except pytest.fail.Exception as exc:  # the fixture reports through pytest
            raise RuntimeError(str(exc)) from None
        reference = {}
        for text in NEURAL_TEXTS:
            body = {"query": {"neural": {"vector": {"query_text": text, "k": 10}}}}
            resp = requests.post(f"{base}/{index}/_search", json=body, timeout=CLIENT_TIMEOUT)
            resp.raise_for_status()
            reference[text] = hit_ids(resp.json())
        halt, listen_stop = threading.Event(), threading.Event()
        with ThreadPoolExecutor(GATEWAY_CLIENTS + 1) as pool:
            clients = [
                pool.submit(gateway_client, n, base, index, reference, halt)
                for n in range(GATEWAY_CLIENTS)
            ]
            try:
                time.sleep(BEFORE_S)
                killed = time.monotonic()
                kill_node_hard(ctx.node)
                dead = time.monotonic()
                listener = pool.submit(first_listening, ctx.node.port, listen_stop)
                time.sleep(DOWN_S)
                restarted = time.monotonic()
                try:
                    ctx.node.start(timeout=300)
                finally:
                    listen_stop.set()
                healthy = time.monotonic()
                time.sleep(RECOVERY_BOUND + AFTER_S)
            finally:
                halt.set()  # the clients end whatever happened, or the pool never closes
            answers = [a for c in clients for a in c.result()]
            listening = (listener.result() or [healthy])[0]
        gateway_alive = proc.poll() is None
    finally:
        stop(proc)
    logged = log.read_text(encoding="utf-8", errors="replace")

    before = [a for a in answers if a.sent < dead]
    down = [a for a in answers if a.sent >= dead and a.done < listening]
    after = [a for a in answers if a.sent >= dead and a.done >= listening]
    refusals = {"502", "503"}
    # Sent before the node died: answered by it (200) or refused once it was gone.
    in_flight_ok = {"200"} | refusals
    checks.expect(all(a.status == "200" for a in before if a.done < killed), "a failure before")
    checks.expect(all(a.status in in_flight_ok for a in before), "an in-flight request failed")
    checks.expect(all(a.status in refusals for a in down), "not 502/503 while down")
    checks.expect(all(a.status in in_flight_ok for a in after), "not 200/502/503 after")
    checks.expect(len(down) > 0, "no request while the node was down")
    # Each client's last refusal: after it, nothing but 200s.
    last_refusal = max([a.done for a in after if a.status != "200"], default=listening)
    recovery = max(0.0, last_refusal - healthy)
    checks.expect(recovery <= RECOVERY_BOUND, f"recovered {recovery:.1f}s after healthy")
    recovered = [a for a in after if a.sent > last_refusal]
    served = {a.client for a in recovered if a.status == "200"}
    checks.expect(len(served) == GATEWAY_CLIENTS, f"{len(served)} clients got 200s again")
    neural_before = [a for a in before if a.same_ids is not None]
    neural_after = [a for a in recovered if a.same_ids is not None]
    same_before = sum(bool(a.same_ids) for a in neural_before)
    same_after = sum(bool(a.same_ids) for a in neural_after)
    checks.expect(same_before == len(neural_before), "neural hits changed before the kill")
    checks.expect(bool(neural_after) and same_after == len(neural_after), "neural hits changed")
    checks.expect(all(a.same_ids is not False for a in answers), "a neural 200 with other hits")
    checks.expect("Traceback" not in logged, "a traceback in the gateway's log")
    checks.expect(gateway_alive, "the gateway exited")
    slowest = max(a.done - a.sent for a in answers)
    seen = (
        f"before: {tally(before)}; down {listening - dead:.0f}s: {tally(down)}; after: "
        f"{tally(after)}; every client on 200 {recovery:.1f}s after the node was healthy "
        f"(its restart took {healthy - restarted:.0f}s); neural top 10 equal: "
        f"{same_before}/{len(neural_before)} before, {same_after}/{len(neural_after)} after; "
        f"slowest answer {slowest:.1f}s; "
        + ("a TRACEBACK" if "Traceback" in logged else "no traceback")
        + " in the gateway's log"
    )
    return [
        Outcome(
            f"{GATEWAY_CLIENTS} concurrent `dotbridge serve` clients (match search, "
            "`_cat/health`, neural) while the node is killed (`kill -9`) and restarted",
            not checks.failed,
            "only 502/503 while the node is down (no 500, no hang past "
            f"{CLIENT_TIMEOUT:.0f}s, no refused connection, no traceback); within "
            f"{RECOVERY_BOUND:.0f}s of the node's health every client gets 200s again and the "
            "neural top 10 equal those before",
            seen + (f"; FAILED: {'; '.join(checks.failed)}" if checks.failed else ""),
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
        gateway_port = ports[2] if len(ports) > 2 else None
        ctx = Context(
            work, tiny_model(work / "tiny"), node, ports[1], args.seed, args.queries, gateway_port
        )
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
    parser.add_argument(
        "--readme",
        type=Path,
        help="Write the table between its markers in this file (docs/drills.md).",
    )
    parser.add_argument(
        "--ports",
        default="9291,9292",
        help="The main node's, the storm node's[, the gateway's (default: a free one)].",
    )
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
