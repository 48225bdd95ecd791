"""What int8 costs: all-MiniLM-L6-v2 quantized (ONNX Runtime, dynamic int8) against float32.

    python benchmarks/int8_quality.py [--url URL] [--collections scifact,nfcorpus]
        [--datasets DIR] [--readme docs/evaluation.md] [--out benchmarks/results/int8_quality.json]

For each collection: the float32 index `eval-minilm-NAME` (the one `dotbridge eval-all` fills,
torch) and an int8 index `eval-minilm-int8-NAME` (every passage encoded by the int8 model, as
`dotbridge ingest --quantize int8` does), each filled when missing; then every dense mode of the
README table (rerank, knn, hybrid: the same plans as eval-all) with each model's own index and
queries. Reports nDCG@10 side by side and the cosine between int8 and float32 vectors of the
same queries and of a sample of passages. With --readme the table goes between
`<!-- int8:start -->` and `<!-- int8:end -->`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import cosines  # noqa: E402

from bridge.client import connect  # noqa: E402
from bridge.config import ConnectionSettings, minilm_model_dir  # noqa: E402
from bridge.datasets import locate  # noqa: E402
from bridge.encoder import Encoder  # noqa: E402
from bridge.evaluate import load_split  # noqa: E402
from bridge.report import (  # noqa: E402
    ensure_ingested,
    evaluate_split,
    index_name,
    replace_between_markers,
)
from ingest.readers import Record, read_records  # noqa: E402

DENSE_MODES = ("rerank", "knn", "hybrid")
TOLERANCE = 0.005  # the target: nDCG@10 within this of float32
PASSAGE_SAMPLE = 1000


def measure(client, name: str, datasets: Path | None, encoders: dict[str, Encoder]) -> dict:
    split = load_split(datasets / name if datasets is not None else locate(name))
    result: dict = {"collection": split.name, "queries": len(split.queries), "ndcg@10": {}}
    for label, encoder in encoders.items():
        index = index_name(split.name, "minilm" if label == "float32" else "minilm-int8")
        started = time.perf_counter()
        ensure_ingested(client, split.corpus, index, encoder, progress=False)
        rows = evaluate_split(
            split, client=client, index=index, encoder=encoder, modes=DENSE_MODES, progress=False
        )
        for row in rows:
            result["ndcg@10"].setdefault(row.mode, {})[label] = row.metrics["nDCG@10"]
        print(f"{split.name} {label}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    queries = list(split.queries.values())
    rng = random.Random(7)
    passages = [r.passage for r in read_records(split.corpus) if isinstance(r, Record)]
    sample = rng.sample(passages, min(PASSAGE_SAMPLE, len(passages)))
    q = cosines(
        encoders["float32"].encode_queries(queries), encoders["int8"].encode_queries(queries)
    )
    p = cosines(
        encoders["float32"].encode_passages(sample), encoders["int8"].encode_passages(sample)
    )
    result["cosine"] = {
        "queries": {"mean": float(q.mean()), "min": float(q.min()), "n": len(queries)},
        "passages": {"mean": float(p.mean()), "min": float(p.min()), "n": len(sample)},
    }
    return result


def render(results: list[dict], engine: str) -> str:
    lines = [
        f"all-MiniLM-L6-v2, float32 (torch) vs int8 (ONNX Runtime dynamic quantization), each "
        f"with its own index on {engine}; the plans of the evaluation table above. Target: "
        f"nDCG@10 within {TOLERANCE} of float32.",
        "",
        "| collection | mode | nDCG@10 float32 | nDCG@10 int8 | difference | within target |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for mode in DENSE_MODES:
            f32, i8 = res["ndcg@10"][mode]["float32"], res["ndcg@10"][mode]["int8"]
            ok = "yes" if abs(i8 - f32) <= TOLERANCE else "no"
            lines.append(
                f"| {res['collection']} | {mode} | {f32:.3f} | {i8:.3f} | {i8 - f32:+.4f} | {ok} |"
            )
    lines += ["", "| collection | cosine int8 vs float32, queries (mean / min) | passages |"]
    lines.append("|---|---|---|")
    for res in results:
        q, p = res["cosine"]["queries"], res["cosine"]["passages"]
        lines.append(
            f"| {res['collection']} | {q['mean']:.4f} / {q['min']:.4f} ({q['n']}) | "
            f"{p['mean']:.4f} / {p['min']:.4f} ({p['n']} sampled) |"
        )
    lines += ["", "```bash", "python benchmarks/int8_quality.py --readme docs/evaluation.md", "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--collections", default="scifact,nfcorpus")
    parser.add_argument(
        "--datasets", type=Path, help="Default: each collection found by bridge.datasets."
    )
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_quality.json"))
    args = parser.parse_args()

    client = connect(ConnectionSettings(url=args.url))
    model = minilm_model_dir()
    encoders = {
        "float32": Encoder(model, device="cpu", batch_size=64),
        "int8": Encoder(model, device="cpu", batch_size=64, runtime="onnx", quantize="int8"),
    }
    results = [
        measure(client, name, args.datasets, encoders) for name in args.collections.split(",")
    ]
    from bridge.backends import backend_of

    backend = backend_of(client)
    block = render(results, f"{backend.product} {backend.version(client)}")
    print(block)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.readme:
        text = args.readme.read_text()
        args.readme.write_text(
            replace_between_markers(
                text, block, start="<!-- int8:start -->", end="<!-- int8:end -->"
            )
        )


if __name__ == "__main__":
    main()
