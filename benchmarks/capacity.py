"""MS MARCO passage (8.8M passages, the seed model's 768 dimensions) computed from the measured
per-vector figures of `benchmarks/scale.py` (OpenSearch, 384-d MiniLM vectors) and of
`eval-all --compression` on Elasticsearch (bbq), for docs/capacity.md.

    python benchmarks/capacity.py [--scale benchmarks/results/scale.json]
        [--es runs/compression-elasticsearch.json] [--ram-gb 64] [--disk-gb 1000]

Computed, not measured: each measured index file is split into what grows with the dimension
(the float32 vectors `.vec`, the quantised copy `.veq`/`.veb`) and what does not (the HNSW graph
`.vex`, m=16), and the first is scaled by 768/384. A node is assumed to give half its RAM to the
page cache that must hold the graph and the vectors it walks (the other half to the JVM heap and
the OS), as both engines advise.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

PASSAGES = 8_841_823
DIMS, MEASURED_DIMS = 768, 384
GRAPH = (".vex",)
SCALED = (".vec", ".veq", ".veb")


def per_vector(files: dict[str, int], n: int) -> dict[str, float]:
    return {ext: size / n for ext, size in files.items()}


def project(files: dict[str, float], walked: tuple[str, ...]) -> tuple[float, float]:
    """(memory, disk) bytes per 768-d vector from one measured index's per-vector file sizes."""
    factor = DIMS / MEASURED_DIMS
    scaled = {e: v * (factor if e in SCALED else 1.0) for e, v in files.items()}
    memory = sum(scaled.get(e, 0.0) for e in walked + GRAPH)
    vector_files = (".vec", ".vex", ".vem", ".veq", ".vemq", ".veb", ".vemb", ".vemf")
    disk = sum(scaled.get(e, 0.0) for e in vector_files)
    return memory, disk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument("--es", type=Path)
    parser.add_argument("--ram-gb", type=float, default=64.0)
    parser.add_argument("--disk-gb", type=float, default=1000.0)
    args = parser.parse_args()
    rows = json.loads(args.scale.read_text())
    largest = max(r["size"] for r in rows)
    cache = args.ram_gb / 2 * 2**30
    out = [
        "| compression | source of the per-vector figures | memory B/vec (768-d) | "
        "memory total GB | vector files on disk GB | nodes for memory | knn p50 ms (measured) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["size"] != largest:
            continue
        files = per_vector({("." + k.lstrip(".")): v for k, v in r["files"].items()}, r["size"])
        walked = (".veq",) if r["compression"] == "4x" else (".vec",)
        memory, disk = project(files, walked)
        out.append(
            line(
                r["compression"],
                f"OpenSearch {r['size']:,} vectors",
                memory,
                disk,
                cache,
                r["knn_p50_ms"],
            )
        )
    if args.es is not None and args.es.exists():
        graph = next(
            (
                per_vector({("." + k.lstrip(".")): v for k, v in r["files"].items()}, r["size"])
                for r in rows
                if r["size"] == largest and r["compression"] == "none"
            ),
            {},
        ).get(".vex", 0.0)
        for r in json.loads(args.es.read_text()):
            if r["compression"] != "32x" or r["mode"] != "knn":
                continue
            # The binary copy and its corrections scale with the dimension; the graph does not.
            quantised = r["memory_per_vector"] - graph
            memory = quantised * DIMS / MEASURED_DIMS + graph
            disk = r["disk_per_vector"] - graph
            disk = disk * DIMS / MEASURED_DIMS + graph
            out.append(
                line(
                    "32x", f"Elasticsearch bbq, {r['collection']}", memory, disk, cache, r["p50_ms"]
                )
            )
    print("\n".join(out))


def line(level: str, source: str, memory: float, disk: float, cache: float, p50: float) -> str:
    total = memory * PASSAGES
    nodes = math.ceil(total / cache)
    return (
        f"| {level} | {source} | {memory:,.0f} | {total / 2**30:,.1f} | "
        f"{disk * PASSAGES / 2**30:,.1f} | {nodes} | {p50:.1f} |"
    )


if __name__ == "__main__":
    main()
