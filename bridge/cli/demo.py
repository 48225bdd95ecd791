"""`dotbridge demo`: the main job end to end, through bridge.demo."""

from __future__ import annotations

import click

from bridge.cli.options import DEVICE, connection_options
from bridge.config import ConnectionSettings


@click.command()
@click.option("--model", help="Model id or directory (default: the seed, else MiniLM).")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@click.option("--docs", default=500, show_default=True, type=click.IntRange(1), help="Slice size.")
@click.option("--query", default=None, help="The query to run in every mode.")
@click.option(
    "-k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="Hits per mode."
)
@connection_options
def demo(
    model: str | None,
    device: str,
    docs: int,
    query: str | None,
    k: int,
    settings: ConnectionSettings,
) -> None:
    """The main job: start the local node, ingest a sample collection, query in every mode.

    With OPENSEARCH_URL set, that cluster is used instead of the local node.
    """
    from bridge.demo import run_demo

    run_demo(settings, model=model, device=device, docs=docs, query=query, k=k, say=click.echo)
