"""Helpers shared by the ingest tests: where the datasets are, the CLI in and out of process."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.datasets import find


def datasets_dir() -> Path:
    """The folder holding SciFact, found the one documented way (bridge.datasets:
    DOTBRIDGE_DATASETS, ../shared/datasets, dotbridge's cache); `make test` and conftest stop
    with one sentence before any test runs when there is none."""
    found = find("scifact")
    return found.parent if found is not None else Path("no-datasets-found")


SCIFACT = datasets_dir() / "scifact" / "corpus.jsonl"


def read_jsonl(path: Path, limit: int) -> list[dict]:
    """The first `limit` records of a JSON-lines file."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == limit:
                break
    return rows


def count(client, index) -> int:
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]


def distinct_ids(client, index) -> int:
    client.indices.refresh(index=index)
    agg = {"cardinality": {"field": "doc_id", "precision_threshold": 40_000}}  # exact below
    body = {"size": 0, "aggs": {"ids": agg}}
    return client.search(index=index, body=body)["aggregations"]["ids"]["value"]


def refresh_interval(client, index) -> str | None:
    """The index's own refresh interval; None: the default (1s)."""
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    return settings.get("refresh_interval")


def indexed_ops(client, index) -> int:
    """Documents indexed so far, visible without a refresh (refresh is off during ingest)."""
    if not client.indices.exists(index=index):
        return 0
    stats = client.indices.stats(index=index, metric="indexing")
    # A new index whose primaries have not started yet has no stats (Elasticsearch: `{}`).
    return stats["_all"]["primaries"].get("indexing", {}).get("index_total", 0)


def run_cli(target, path, index, encoder, *extra, input=None) -> Result:
    """`dotbridge ingest` in process, against connection settings or an `engine` fixture."""
    args = ["ingest", str(path), "--index", index, "--model", str(encoder.model_id)]
    args += ["--device", "cpu", "--no-progress", *map(str, extra)]
    env = getattr(target, "env", None) or {"OPENSEARCH_URL": target.url}
    return CliRunner().invoke(main, args, env=env, input=input)


def ingest_command(corpus, index, model_dir, *extra) -> list[str]:
    """`dotbridge ingest` as a separate process (python -m bridge)."""
    return [
        sys.executable,
        "-m",
        "bridge",
        "ingest",
        str(corpus),
        "--index",
        index,
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--no-progress",
        *map(str, extra),
    ]


def cli_env(settings) -> dict[str, str]:
    return {**os.environ, "OPENSEARCH_URL": settings.url}


def summary_counts(output: str) -> tuple[int, ...]:
    match = re.search(r"read (\d+), indexed (\d+), rejected (\d+), already present (\d+)", output)
    assert match, output
    return tuple(map(int, match.groups()))
