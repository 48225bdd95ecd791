"""`dotbridge ingest` with and without --ray: the same SciFact passages, the packaged MiniLM on
the CPU, plain and through `--ray --workers N` (a local Ray instance for each run).

    python benchmarks/bench_ray.py [--docs 5000] [--workers 1,2] [--port 9503]
                                   [--out benchmarks/results/ray.json] [--doc docs/ray.md]

Against OPENSEARCH_URL's cluster, else a local node started on --port (and stopped afterwards).
Each run is the `dotbridge ingest` command a user types, into a fresh index; it prints its
start-up (model load; with --ray also starting Ray and its workers, which load the model) apart
from its ingest wall, so the table shows both rates: docs/s of the ingest itself and of the
whole command. The peak memory is the driver's, and the sum over Ray's processes (resident
pages, so libraries shared between processes count once per process). One run each; ratios
are to the plain run of this same invocation. With --doc the table goes between
`<!-- bench_ray:start -->` and `<!-- bench_ray:end -->`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.harness import cluster, markdown_table, run_ingest, write_block  # noqa: E402
from bridge.client import connect  # noqa: E402
from bridge.config import ConnectionSettings, minilm_model_dir  # noqa: E402
from tests.ingest_helpers import datasets_dir, ingest_command  # noqa: E402

BLOCK = "bench_ray"
SUMMARY = re.compile(
    r"read (\d+), indexed (\d+).*?encoded (\d+).*?wall ([\d.]+)s, encode ([\d.]+)s, "
    r"index ([\d.]+)s(?:, start-up ([\d.]+)s)?"
)
RAY_PARTS = ("/ray/_private/", "/ray/dashboard/", "/ray/autoscaler/", "ingest.distributed.keeper")


class RayMemory:
    """The peak of the summed resident memory of this user's Ray processes while it runs."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> RayMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            total = 0
            for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
                cmdline = proc.info["cmdline"] or []
                first = cmdline[0] if cmdline else ""
                if (
                    proc.info["name"] in ("raylet", "gcs_server")
                    or first.startswith("ray::")
                    or any(part in arg for arg in cmdline for part in RAY_PARTS)
                ) and proc.info["memory_info"] is not None:
                    total += proc.info["memory_info"].rss
            self.peak_mb = max(self.peak_mb, total / 2**20)


def measure(url: str, corpus: Path, model: Path, workers: list[int], work: Path) -> list[dict]:
    client = connect(ConnectionSettings(url=url))
    runs: list[dict[str, Any]] = []
    for count in [0, *workers]:
        name = "plain" if count == 0 else f"--ray --workers {count}"
        extra = [] if count == 0 else ["--ray", "--workers", count]
        index = f"bench-ray-{uuid.uuid4().hex[:8]}"
        print(f"{name} ...", file=sys.stderr, flush=True)
        command = ingest_command(corpus, index, model, "--batch-size", 64, *extra)
        try:
            with RayMemory() as memory:
                run = run_ingest(command, url, cwd=work)
            stored = client.count(index=index)["count"] if run.returncode == 0 else None
        finally:
            client.indices.delete(index=index, ignore_unavailable=True)
        match = SUMMARY.search(run.stdout)
        if run.returncode != 0 or match is None:
            raise SystemExit(f"{name} failed ({run.returncode}): {run.stderr[-2000:]}")
        read, indexed, encoded, wall, encode, index_s, startup = match.groups()
        runs.append(
            {
                "run": name,
                "workers": count,
                "read": int(read),
                "indexed": int(indexed),
                "encoded": int(encoded),
                "in_index": stored,
                "startup_s": float(startup or 0),
                "ingest_s": float(wall),
                "encode_s": float(encode),
                "index_s": float(index_s),
                "process_s": run.wall_s,
                "driver_peak_mb": run.peak_rss_mb,
                "ray_peak_mb": memory.peak_mb,
            }
        )
    plain = runs[0]
    for run in runs:
        run["docs_per_s"] = run["indexed"] / run["ingest_s"]
        run["docs_per_s_all_in"] = run["indexed"] / run["process_s"]
        run["vs_plain"] = run["docs_per_s"] / plain["docs_per_s"]
        run["vs_plain_all_in"] = run["docs_per_s_all_in"] / plain["docs_per_s_all_in"]
    return runs


def ingest_on_gpus(
    client: Any, model_dir: Path, corpus: Path, *, dtype: str, batch_size: int, device: str
) -> dict[str, Any]:
    """`corpus` into a fresh index through a local Ray instance with one encoder worker per
    GPU (benchmarks/gpu.sh's part 3): each worker's passages/s (its model seconds) and the
    run's docs/s (its ingest wall), start-up apart. device "cpu": two CPU workers, so that
    --smoke --ray runs the same code without a GPU."""
    import torch

    from bridge.config import ModelSettings
    from ingest.distributed.workers import start_ray_encoder
    from ingest.pipeline import ingest_corpus

    gpus = torch.cuda.device_count() if device == "cuda" else 2
    settings = ModelSettings(
        model=str(model_dir), device=device, dtype=dtype, batch_size=batch_size
    )
    started = time.perf_counter()
    encoder = start_ray_encoder(settings, workers=gpus)
    startup = time.perf_counter() - started
    index = f"bench-gpu-ray-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stats = ingest_corpus(
                corpus,
                client=client,
                index=index,
                encoder=encoder,
                rejects=Path(tmp) / "rejects.jsonl",
                progress=False,
            )
        in_index = client.count(index=index)["count"]
        per_gpu = [
            {**dataclasses.asdict(w), "passages_per_s": w.records / w.seconds if w.seconds else 0}
            for w in encoder.worker_stats
        ]
    finally:
        encoder.close()
        client.indices.delete(index=index, ignore_unavailable=True)
    return {
        "gpus": gpus,
        "device": device,
        "docs": stats.indexed,
        "count_in_index": in_index,
        "startup_s": startup,
        "wall_s": stats.wall_s,
        "docs_per_s": stats.indexed / stats.wall_s,
        "per_gpu": per_gpu,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            f"`{r['run']}`",
            r["indexed"],
            f"{r['startup_s']:.1f}",
            f"{r['ingest_s']:.1f}",
            f"{r['docs_per_s']:.0f}",
            f"{r['vs_plain']:.2f}x",
            f"{r['process_s']:.1f}",
            f"{r['docs_per_s_all_in']:.0f}",
            f"{r['vs_plain_all_in']:.2f}x",
            f"{r['driver_peak_mb']:.0f}",
            f"{r['ray_peak_mb']:.0f}" if r["workers"] else "",
        )
        for r in result["runs"]
    ]
    header = (
        "run",
        "docs",
        "start-up s",
        "ingest s",
        "docs/s (ingest)",
        "vs plain",
        "command s",
        "docs/s (command)",
        "vs plain",
        "driver peak MB",
        "Ray processes peak MB",
    )
    env = result["environment"]
    caption = (
        f"{result['docs']} SciFact passages, all-MiniLM-L6-v2 on the CPU (batch 64), "
        f"{env['cpus']} CPUs, ray {env['ray']}, {result['where']}; one run each, "
        f"{result['date']} (`python benchmarks/bench_ray.py --docs {result['docs']}`)."
    )
    return f"{caption}\n\n{markdown_table(header, rows)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--workers", default="1,2", help="comma-separated --workers to run")
    parser.add_argument("--port", type=int, default=9503, help="local node, when no URL")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/ray.json")
    parser.add_argument("--doc", type=Path, help="Markdown page to write the table into")
    args = parser.parse_args(argv)
    if args.doc is not None and f"<!-- {BLOCK}:start -->" not in args.doc.read_text():
        raise SystemExit(f"{args.doc} has no <!-- {BLOCK}:start --> marker: add the pair.")
    import ray

    model = minilm_model_dir()
    source = datasets_dir() / "scifact" / "corpus.jsonl"
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        with source.open(encoding="utf-8") as f, corpus.open("w", encoding="utf-8") as out:
            for number, line in enumerate(f, 1):
                if number > args.docs:
                    break
                out.write(line)
        url = os.environ.get("OPENSEARCH_URL")
        with cluster(url, args.port) as where:
            runs = measure(
                where, corpus, model, [int(w) for w in args.workers.split(",")], Path(tmp)
            )
    result = {
        "docs": args.docs,
        "where": "OPENSEARCH_URL" if url else "a local OpenSearch node (512 MB heap)",
        "date": datetime.date.today().isoformat(),
        "environment": {
            "cpus": os.cpu_count(),
            "ray": ray.__version__,
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = markdown(result)
    print(table)
    if args.doc is not None:
        write_block(args.doc, BLOCK, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
