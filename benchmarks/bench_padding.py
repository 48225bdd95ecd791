"""Padding that pays: padded / real tokens of an ingest, one batch sorted at a time vs a window.

    python benchmarks/bench_padding.py [--windows 1,16] [--limit 3000] [--models tiny,minilm]
        [--batch-size 64] [--port 9291]

Runs the real ingest (`ingest.pipeline.ingest`) into a real node (OPENSEARCH_URL, else a local
node on --port) and counts what the model is actually fed: a forward hook adds up each batch's
attention mask (real tokens) and its size (padded tokens). `--sort-window 1` is the old way (the
encoder sorted only inside one batch, which is the whole batch: nothing to gain); a window of W
batches is sorted by length before it is cut. Corpora: SciFact, NFCorpus and the TREC DL passage
subset under ../shared/datasets when present, else a synthetic one. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO, cluster, markdown_table, synthetic_corpus, tiny_model  # noqa: E402

DATASETS = ("scifact", "nfcorpus", "trec-dl-2019-passage-subset")


def corpora(work: Path, limit: int) -> dict[str, Path]:
    found = {}
    for parent in REPO.parents:
        base = parent / "shared" / "datasets"
        if base.is_dir():
            found = {n: base / n / "corpus.jsonl" for n in DATASETS if (base / n).is_dir()}
            break
    return found or {"synthetic": synthetic_corpus(work / "synthetic.jsonl", limit).path}


class Padding:
    """Real and padded tokens the model was fed, from its attention masks."""

    def __init__(self, model) -> None:
        self.real = self.padded = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        mask = kwargs["attention_mask"]
        self.padded += mask.numel()
        self.real += int(mask.sum())

    def reset(self) -> None:
        self.real = self.padded = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="1,16")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--models", default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--port", type=int, default=9291)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]

    from bridge.client import connect
    from bridge.config import ConnectionSettings, minilm_model_dir
    from bridge.encoder import Encoder
    from ingest.ledger import RejectsFile
    from ingest.pipeline import ingest
    from ingest.readers import read_records

    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(os.environ.get("OPENSEARCH_URL"), args.port) as url,
    ):
        work = Path(tmp)
        client = connect(ConnectionSettings(url=url))
        for model_name in args.models.split(","):
            path = tiny_model(work / "tiny") if model_name == "tiny" else minilm_model_dir()
            encoder = Encoder(path, device="cpu", batch_size=args.batch_size)
            padding = Padding(encoder.model)
            for name, corpus in corpora(work, args.limit).items():
                base = None
                for window in windows:
                    index = f"bench-padding-{window}"
                    client.indices.delete(index=index, ignore_unavailable=True)
                    padding.reset()
                    started = time.perf_counter()
                    stats = ingest(
                        read_records(corpus, limit=args.limit),
                        client=client,
                        index=index,
                        encoder=encoder,
                        rejects=RejectsFile(work / "r.jsonl"),
                        batch_size=args.batch_size,
                        sort_window=window,
                        progress=False,
                    )
                    wall = time.perf_counter() - started
                    client.indices.delete(index=index)
                    ratio = padding.padded / padding.real
                    base = base or (ratio, stats.encode_s)
                    rows.append(
                        [
                            model_name,
                            name,
                            f"{stats.indexed:,}",
                            window,
                            f"{ratio:.3f}",
                            f"{stats.encode_s:.1f}",
                            f"{base[1] / stats.encode_s:.2f}x",
                            f"{wall:.1f}",
                        ]
                    )
                    print(f"{model_name} {name} window {window}: {ratio:.3f}", file=sys.stderr)
    header = [
        "model",
        "corpus",
        "docs",
        "sort window (batches)",
        "padded / real tokens",
        "encode s",
        "encode speed vs window 1",
        "wall s",
    ]
    print(f"batch size {args.batch_size}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
