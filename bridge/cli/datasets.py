"""`dotbridge datasets list | fetch`: where the evaluation collections are, through
bridge.datasets."""

from __future__ import annotations

import click


@click.group()
def datasets() -> None:
    """The evaluation collections: where each is found, and fetching the public ones.

    A collection is looked for in $DOTBRIDGE_DATASETS, then ../shared/datasets beside the
    checkout, then dotbridge's cache, which `fetch` fills.
    """


@datasets.command("list")
def list_() -> None:
    """Each known collection and where it is found (or how to get it)."""
    from bridge.datasets import describe_all

    for line in describe_all():
        click.echo(line)


@datasets.command()
@click.argument("name")
def path(name: str) -> None:
    """Print the folder of collection NAME (for scripts: `$(dotbridge datasets path scifact)`)."""
    from bridge.datasets import locate

    click.echo(locate(name))


@datasets.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--from",
    "mirror",
    metavar="URL",
    help="Download the archive from this URL instead of BEIR's (a mirror of the same zip: its "
    "md5 is still checked against BEIR's).",
)
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
def fetch(names: tuple[str, ...], mirror: str | None, progress: bool | None) -> None:
    """Download the BEIR collections NAMES (scifact, nfcorpus) into dotbridge's cache."""
    import sys

    from bridge.datasets import fetch_named

    show = sys.stderr.isatty() if progress is None else progress
    for name in names:
        fetch_named(name, mirror=mirror, progress=show, say=click.echo)
