"""Cluster drills: a real 3-node cluster (`dotbridge opensearch start --nodes 3`), nodes killed
while `dotbridge` works through all three.

    python benchmarks/cluster_drills.py [--port 9260] [--transport-port 9270] [--records 5000]
        [--readme docs/cluster.md] [--only NAME,NAME]

Drills (each starts from a healthy cluster):
- restart: ingest while the node named first is killed (`kill -9`) and started again;
- manager: ingest while the elected cluster manager is killed;
- gateway: 20 clients of `dotbridge serve --url <all three>` while the node named first is
  killed: every failure counted, and the failover window (first to last failed answer) measured.
Prints a table and, with --readme, writes it between `<!-- cluster-drills:start -->` and
`<!-- cluster-drills:end -->`. Exits non-zero when a drill fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drills import NEURAL_TEXTS, gateway_client, hit_ids, tally  # noqa: E402
from harness import (  # noqa: E402
    Process,
    ingest_command,
    markdown_table,
    synthetic_corpus,
    tiny_model,
    write_block,
)

from bridge.client import connect  # noqa: E402
from bridge.config import ConnectionSettings  # noqa: E402
from bridge.nodes.cluster import ClusterMember, LocalCluster  # noqa: E402

CLIENTS = 20
BEFORE_S, DOWN_S = 5.0, 20.0


def kill_hard(member: ClusterMember) -> None:
    pid = member.running_pid()
    if pid is None:
        raise RuntimeError(f"node {member.name} is not running")
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while member.running_pid() and time.monotonic() < deadline:
        time.sleep(0.1)


def manager(cluster: LocalCluster) -> ClusterMember:
    client = connect(ConnectionSettings(url=cluster.url))
    name = client.cat.cluster_manager(format="json")[0]["node"]
    return next(m for m in cluster.members() if m.name == name)


def ingest_drill(cluster, work, model, records, victim, *, restart: bool) -> tuple[bool, str]:
    """Ingest `records` through all three nodes; `victim(cluster)` killed once a fifth is in."""
    index = f"drill-cluster-{'restart' if restart else 'manager'}"
    url = cluster.url
    client = connect(ConnectionSettings(url=url))
    client.indices.delete(index=index, ignore_unavailable=True)
    corpus = synthetic_corpus(work / f"{index}.jsonl", records, seed=11)
    proc = Process(ingest_command(corpus.path, index, model, "--pooling", "mean"), url)
    member = victim(cluster)
    spared = ConnectionSettings(url=",".join(m.url for m in cluster.members() if m != member))
    probe = connect(spared)
    while proc.alive() and _indexed(probe, index) < records // 5:
        time.sleep(0.05)
    killed = time.monotonic()
    kill_hard(member)
    if restart:
        member.start(timeout=600)
    back = time.monotonic() - killed
    run = proc.wait(timeout=1800)
    probe.indices.refresh(index=index)
    total = probe.count(index=index)["count"]
    counts = run.counts()
    ok = run.returncode == 0 and total == len(corpus.good_ids) and counts.get("rejected") == 0
    if not restart:
        member.start(timeout=600)  # the next drill needs all three
    seen = (
        f"{member.name} killed at {records // 5}+ indexed"
        + (f", back in {back:.0f} s" if restart else "")
        + f"; exit {run.returncode}, {total} documents of {len(corpus.good_ids)}, "
        f"rejected {counts.get('rejected')}, retried {counts.get('retried', 0)}; "
        f"wall {run.wall_s:.1f} s"
    )
    client.indices.delete(index=index, ignore_unavailable=True)
    return ok, seen


def _indexed(client, index: str) -> int:
    if not client.indices.exists(index=index):
        return 0
    stats = client.indices.stats(index=index, metric="indexing")
    return stats["_all"]["primaries"].get("indexing", {}).get("index_total", 0)


def gateway_drill(cluster, work, model) -> tuple[bool, str]:
    """20 gateway clients while the node named first is killed: failures and their window."""
    import requests

    from tests.gateway_fixtures import start_gateway, stop, wait_ready

    index, url = "drill-cluster-gateway", cluster.url
    client = connect(ConnectionSettings(url=url))
    client.indices.delete(index=index, ignore_unavailable=True)
    corpus = synthetic_corpus(work / "gateway.jsonl", 2000, seed=12)
    built = Process(ingest_command(corpus.path, index, model, "--pooling", "mean"), url).wait()
    if built.returncode != 0:
        raise RuntimeError(f"could not build the gateway index: {built.stderr}")
    client.cluster.health(index=index, wait_for_status="green")
    log = work / "serve.log"
    proc, base = start_gateway(ConnectionSettings(url=url), model, log)
    try:
        wait_ready(proc, base, log)
        reference = {}
        for text in NEURAL_TEXTS:
            body = {"query": {"neural": {"vector": {"query_text": text, "k": 10}}}}
            resp = requests.post(f"{base}/{index}/_search", json=body, timeout=30)
            resp.raise_for_status()
            reference[text] = hit_ids(resp.json())
        halt = threading.Event()
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [
                pool.submit(gateway_client, n, base, index, reference, halt) for n in range(CLIENTS)
            ]
            time.sleep(BEFORE_S)
            killed = time.monotonic()
            kill_hard(cluster.members()[0])
            time.sleep(DOWN_S)
            halt.set()
            answers = [a for f in futures for a in f.result()]
    finally:
        stop(proc)
    failed = [a for a in answers if a.status != "200" or a.same_ids is False]
    window = (max(a.done for a in failed) - killed) if failed else 0.0
    during = [a for a in answers if a.sent >= killed]
    cluster.members()[0].start(timeout=600)
    client.indices.delete(index=index, ignore_unavailable=True)
    seen = (
        f"{len(answers):,} answers ({len(during):,} after the kill): {tally(answers)}; "
        f"{len(failed)} failed"
        + (f", the last {window:.2f} s after the kill" if failed else "")
        + f"; slowest {max(a.done - a.sent for a in answers):.2f} s"
    )
    return not failed, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9260)
    parser.add_argument("--transport-port", type=int, default=9270)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--only", help="restart, manager, gateway (comma-separated)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {"restart", "manager", "gateway"}
    cluster = LocalCluster(
        nodes=3, port=args.port, heap=args.heap, transport_port=args.transport_port
    )
    cluster.start(timeout=600)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model = tiny_model(work / "tiny")
            plan = [
                ("restart", "ingest; the node named first killed and restarted", None),
                ("manager", "ingest; the elected cluster manager killed", None),
                ("gateway", f"{CLIENTS} gateway clients; the node named first killed", None),
            ]
            for name, what, _ in plan:
                if name not in wanted:
                    continue
                print(f"drill {name} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                if name == "restart":
                    ok, seen = ingest_drill(
                        cluster, work, model, args.records, lambda c: c.members()[0], restart=True
                    )
                elif name == "manager":
                    ok, seen = ingest_drill(
                        cluster, work, model, args.records, manager, restart=False
                    )
                else:
                    ok, seen = gateway_drill(cluster, work, model)
                spent = time.monotonic() - started
                print(f"  {'pass' if ok else 'FAIL'}: {seen}", file=sys.stderr, flush=True)
                rows.append([what, "**pass**" if ok else "**FAIL**", seen, f"{spent:.0f}"])
    finally:
        cluster.stop()
    text = (
        f"`make drills` (cluster part): a 3-node local cluster, {args.heap} heaps, the tests' "
        f"tiny model, synthetic corpora of {args.records:,} records, `--url` naming all three.\n\n"
        + markdown_table(["drill", "result", "seen", "s"], rows)
    )
    print(text)
    if args.readme:
        write_block(args.readme, "cluster-drills", text)
    sys.exit(0 if all("pass" in r[1] for r in rows) else 1)


if __name__ == "__main__":
    main()
