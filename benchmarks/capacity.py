"""MS MARCO passage (8.8M passages, the seed model's 768 dimensions) computed from the measured
per-vector figures of `benchmarks/scale.py` (OpenSearch, 384-d MiniLM vectors) and of
`eval-all --compression` on Elasticsearch (every level), for docs/capacity.md.

    python benchmarks/capacity.py [--scale benchmarks/results/scale.json]
        [--es benchmarks/results/compression-elasticsearch.json] [--ram-gb 64]

Computed, not measured: each measured index file is split into what grows with the dimension
(the float32 vectors `.vec`, the quantised copy `.veq`/`.veb`) and what does not (the HNSW graph
`.vex`, m=16), and the first is scaled by 768/384. Elasticsearch reports one vector total per
field (`_disk_usage`, as `eval-all --compression` records it): its graph is the float32 index's
total less the float32 vectors (n x 384 x 4), and the rest of each level's total is scaled. A
node is assumed to give half its RAM to the page cache that must hold the graph and the vectors
it walks (the other half to the JVM heap and the OS), as both engines advise.
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
    parser.add_argument(
        "--es",
        type=Path,
        default=Path("benchmarks/results/compression-elasticsearch.json"),
        help="eval-all --compression's rows on Elasticsearch (SciFact's are used)",
    )
    parser.add_argument("--ram-gb", type=float, default=64.0)
    args = parser.parse_args()
    cache = args.ram_gb / 2 * 2**30
    out = [
        "| engine, compression | measured on | memory B/vec (768-d) | memory total GiB | "
        "vector files on disk GiB | nodes for memory | knn p50 ms (measured, 384-d) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    if args.scale.exists():
        rows = json.loads(args.scale.read_text())
        for r in rows:
            largest = max(x["size"] for x in rows if x["compression"] == r["compression"])
            if r["size"] != largest or not r["files"]:
                continue
            files = per_vector({"." + k.lstrip("."): v for k, v in r["files"].items()}, r["size"])
            walked = (".vec",) if r["compression"] == "none" else (".veq", ".veb")
            memory, disk = project(files, walked)
            label = f"OpenSearch {r['compression']}"
            out.append(line(label, f"{r['size']:,} vectors", memory, disk, cache, r["knn_p50_ms"]))
    if args.es.exists():
        rows = [r for r in json.loads(args.es.read_text()) if r["collection"] == "scifact"]
        knn = {r["compression"]: r for r in rows if r["mode"] == "knn"}
        for level, r in knn.items():
            memory, disk = project_totals(
                r["memory_per_vector"], r["disk_per_vector"], knn["none"]["memory_per_vector"]
            )
            label = f"Elasticsearch {level}"
            out.append(line(label, "5,183 SciFact vectors", memory, disk, cache, r["p50_ms"]))
    print("\n".join(out))


def project_totals(memory: float, disk: float, float_memory: float) -> tuple[float, float]:
    """(memory, disk) bytes per 768-d vector from one field's measured totals per 384-d vector:
    the graph (the float32 index's total less its vectors) stays, the rest doubles."""
    factor = DIMS / MEASURED_DIMS
    graph = float_memory - MEASURED_DIMS * 4
    return graph + (memory - graph) * factor, graph + (disk - graph) * factor


def line(level: str, source: str, memory: float, disk: float, cache: float, p50: float) -> str:
    total = memory * PASSAGES
    nodes = math.ceil(total / cache)
    return (
        f"| {level} | {source} | {memory:,.0f} | {total / 2**30:,.1f} | "
        f"{disk * PASSAGES / 2**30:,.1f} | {nodes} | {p50:.1f} |"
    )


if __name__ == "__main__":
    main()
