"""The `dotbridge` command: the `main` group and its commands, one module per area.

`boundary` (the group's class, the error boundary, logging), `options` (shared flags),
`ingest`, `search` (search, eval, eval-all), `bench`, `datasets` (list, fetch), `demo`,
`serve` (serve, aliases) and `nodes` (opensearch and elasticsearch start/stop/status). Commands
parse flags and call one library function; heavy modules are imported inside them, so
`dotbridge --help` stays fast.
"""

from __future__ import annotations

import click

from bridge.cli import bench, datasets, demo, ingest, nodes, search, serve
from bridge.cli.boundary import Dotbridge, configure_logging


@click.group(cls=Dotbridge)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="dotbridge")
def main(verbose: int) -> None:
    """dotbridge: a neural bi-encoder in front of OpenSearch or Elasticsearch."""
    configure_logging(verbose)


for command in (
    ingest.ingest,
    search.search,
    search.eval_,
    search.eval_all,
    bench.bench,
    datasets.datasets,
    demo.demo,
    serve.serve,
    serve.aliases,
    nodes.opensearch,
    nodes.elasticsearch,
):
    main.add_command(command)

__all__ = ["main"]
