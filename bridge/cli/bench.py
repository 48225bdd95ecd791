"""`dotbridge bench`: ingest throughput and query latency with MiniLM, through bridge.bench."""

from __future__ import annotations

from pathlib import Path

import click

from bridge.cli.options import BATCH_SIZE_OPTION, DEVICE, connection_options
from bridge.config import ConnectionSettings


@click.command()
@click.option(
    "--out",
    default="bench-results",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for bench.json, bench.md and bench.png.",
)
@click.option(
    "--queries",
    "n_queries",
    default=300,
    show_default=True,
    type=click.IntRange(1),
    help="Queries timed per mode.",
)
@click.option("--limit", type=click.IntRange(1), help="Ingest only the first N documents.")
@click.option(
    "--dataset",
    default="scifact",
    show_default=True,
    help="A BEIR folder, or a collection's name (found as `dotbridge datasets list` shows).",
)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@BATCH_SIZE_OPTION
@click.option("--keep", is_flag=True, help="Keep the benchmark's index afterwards.")
@connection_options
def bench(
    out: Path,
    n_queries: int,
    limit: int | None,
    dataset: str,
    device: str,
    batch_size: int,
    keep: bool,
    settings: ConnectionSettings,
) -> None:
    """Ingest throughput (pipeline vs one-by-one baseline) and query latency per mode."""
    from bridge.bench import bench_minilm
    from bridge.client import connect

    markdown, paths = bench_minilm(
        connect(settings),
        dataset=dataset,
        n_queries=n_queries,
        limit=limit,
        device=device,
        batch_size=batch_size,
        keep=keep,
        out=out,
    )
    click.echo(markdown)
    click.echo("wrote " + ", ".join(str(p) for p in paths))
