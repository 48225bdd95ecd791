"""Where does dotbridge's BM25 differ from Pyserini's flat BM25 baseline? A measurement.

dotbridge's `bm25` mode runs a `multi_match` (best_fields, tie_breaker 0.5) over separate
`title` and `text` fields with OpenSearch's BM25 defaults (k1=1.2, b=0.75). Pyserini's "flat"
BEIR baseline indexes title and text as ONE field with k1=0.9, b=0.4. This script indexes the
same collection BM25-only (no model) in variants that step from one to the other, on the node
at OPENSEARCH_URL, and prints nDCG@10 for each.

    python benchmarks/bm25_gap.py ../shared/datasets/scifact ../shared/datasets/nfcorpus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opensearchpy import helpers

from bridge import evaluate as ev
from bridge.client import connect
from bridge.config import ConnectionSettings
from bridge.search import Bm25
from ingest.readers import Record, read_records

VARIANTS = {
    # name: (fields, k1, b, analyzer)
    "dotbridge: title+text fields, k1=1.2 b=0.75, english": ("split", 1.2, 0.75, "english"),
    "title+text fields, k1=0.9 b=0.4, english": ("split", 0.9, 0.4, "english"),
    "one field, k1=1.2 b=0.75, english": ("flat", 1.2, 0.75, "english"),
    "one field, k1=0.9 b=0.4, english (Pyserini flat)": ("flat", 0.9, 0.4, "english"),
    "one field, k1=0.9 b=0.4, standard (no stemming)": ("flat", 0.9, 0.4, "standard"),
}


def body(fields: str, k1: float, b: float, analyzer: str) -> dict:
    text = {"type": "text", "analyzer": analyzer, "similarity": "tuned"}
    props = {"title": text, "text": text} if fields == "split" else {"text": text}
    return {
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "similarity": {"tuned": {"type": "BM25", "k1": k1, "b": b}},
        },
        "mappings": {"properties": {"doc_id": {"type": "keyword"}, **props}},
    }


def actions(index: str, records: list[Record], fields: str):
    for r in records:
        source = {"doc_id": r.doc_id}
        if fields == "split":
            source.update(title=r.title, text=r.text)
        else:
            source["text"] = r.passage  # title + " " + text, as Pyserini's flat index
        yield {"_index": index, "_id": r.doc_id, "_source": source}


def measure(client, dataset: Path) -> dict[str, float]:
    split = ev.load_split(dataset)
    records = [r for r in read_records(dataset / "corpus.jsonl") if isinstance(r, Record)]
    scores = {}
    for i, (name, (fields, k1, b, analyzer)) in enumerate(VARIANTS.items()):
        index = f"bm25-gap-{dataset.name}-{i}"
        client.indices.delete(index=index, ignore_unavailable=True)
        client.indices.create(index=index, body=body(fields, k1, b, analyzer))
        helpers.bulk(client, actions(index, records, fields), chunk_size=1000)
        client.indices.refresh(index=index)
        result = ev.run_eval(
            Bm25(client, index, source=False),
            split.queries,
            split.qrels,
            k=100,
            measures=["nDCG@10"],
            progress=False,
        )
        scores[name] = result.metrics["nDCG@10"]
        client.indices.delete(index=index)
    return scores


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    args = parser.parse_args(argv)
    client = connect(ConnectionSettings.from_env())
    table = {d.name: measure(client, d) for d in args.datasets}
    names = list(VARIANTS)
    print("| BM25 variant | " + " | ".join(table) + " |")
    print("|---|" + "---:|" * len(table))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{table[d][name]:.3f}" for d in table) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
