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
    parser.add_argument("--es-scale", type=Path, help="scale.py's rows on Elasticsearch")
    parser.add_argument("--ram-gb", type=float, default=64.0)
    args = parser.parse_args()
    cache = args.ram_gb / 2 * 2**30
    out = [
        "| engine, compression | measured on | memory B/vec (768-d) | memory total GiB | "
        "vector files on disk GiB | nodes for memory | knn p50 ms (measured, 384-d) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for product, path in (("OpenSearch", args.scale), ("Elasticsearch", args.es_scale)):
        if path is None or not path.exists():
            continue
        rows = json.loads(path.read_text())
        for r in rows:
            largest = max(x["size"] for x in rows if x["compression"] == r["compression"])
            if r["size"] != largest or not r["files"]:
                continue
            files = per_vector({"." + k.lstrip("."): v for k, v in r["files"].items()}, r["size"])
            walked = (".vec",) if r["compression"] == "none" else (".veq", ".veb")
            memory, disk = project(files, walked)
            label = f"{product} {r['compression']}"
            out.append(line(label, f"{r['size']:,} vectors", memory, disk, cache, r["knn_p50_ms"]))
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
