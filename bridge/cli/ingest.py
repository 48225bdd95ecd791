"""`dotbridge ingest`: corpus files (or stdin) into an index, through ingest.pipeline; with
--ray the encoding runs on Ray workers (ingest.distributed)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from bridge.cli.options import connection_options, model_options
from bridge.config import COMPRESSIONS, SEED_MODEL, ConnectionSettings, ModelSettings
from bridge.errors import BadInput
from ingest.readers import FORMATS
from mappings import ANALYZERS, ENGINES


@click.command()
@click.argument("corpus", nargs=-1, required=True)
@click.option("--index", required=True, help="Index to fill (created when missing).")
@model_options(default=SEED_MODEL)
@connection_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="Input format; auto: from the file name (.jsonl, .tsv, .gz), else JSONL.",
)
@click.option("--id-field", default="_id", show_default=True, help="JSONL key of the id.")
@click.option("--text-field", default="text", show_default=True, help="JSONL key of the text.")
@click.option("--title-field", default="title", show_default=True, help="JSONL key of the title.")
@click.option(
    "--shard", "shard_spec", default="0/1", show_default=True, help="Take every N-th line: I/N."
)
@click.option(
    "--limit", type=click.IntRange(1), help="Read only the first N lines (of each input)."
)
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), help="Rejects JSONL.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="lucene",
    show_default=True,
    help="k-NN engine of a new index (faiss needs its native library on every data node).",
)
@click.option(
    "--analyzer",
    type=click.Choice(ANALYZERS),
    default="english",
    show_default=True,
    help="Text analyzer of title and text in a new index (BM25).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    help="The copy of the vectors the HNSW graph searches, float32 kept for exact scores: "
    "OpenSearch 4x (lucene sq); Elasticsearch 4x/8x/32x (int8/int4/bbq) [default: none].",
)
@click.option("--m", default=16, show_default=True, type=click.IntRange(2), help="HNSW m.")
@click.option(
    "--ef-construction",
    default=128,
    show_default=True,
    type=click.IntRange(2),
    help="HNSW ef_construction.",
)
@click.option(
    "--shards",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Primary shards of a new index (BM25 on several uses DFS).",
)
@click.option(
    "--replicas",
    type=click.IntRange(0),
    help="Replicas of a new index. Default: 1 on a cluster of 2 or more data nodes, else 0.",
)
@click.option(
    "--sort-window",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Batches sorted by length together before encoding (less padding).",
)
@click.option(
    "--max-wait",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1.0),
    help="Seconds the cluster may fail on end (down, overloaded) before the run gives up.",
)
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    metavar="[ADDRESS]",
    help="Encode on Ray workers (the ray extra): on the cluster at ADDRESS (host:port, "
    "ray://host:10001, auto), or, given alone, on a Ray instance on loopback for this run.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="With --ray: encoder workers [default: one per GPU of the cluster, else 1].",
)
def ingest(
    corpus: tuple[str, ...],
    index: str,
    model_settings: ModelSettings,
    settings: ConnectionSettings,
    fmt: str,
    id_field: str,
    text_field: str,
    title_field: str,
    shard_spec: str,
    limit: int | None,
    rejects: Path | None,
    engine: str,
    analyzer: str,
    compression: str | None,
    m: int,
    ef_construction: int,
    shards: int,
    replicas: int | None,
    sort_window: int,
    max_wait: float,
    progress: bool | None,
    ray_address: str | None,
    workers: int | None,
) -> None:
    """Encode a collection and index text plus vectors (CORPUS: .jsonl/.tsv[.gz] files, glob
    patterns such as 'parts/*.jsonl.gz', or - for stdin).

    Records that cannot be indexed go to the rejects file with their reason (and file, when
    several are read); the exit status is non-zero when any were rejected. Running the same
    command again resumes an interrupted run. With --shard I/N, N workers fill one index
    together (each its own rejects file).
    """
    from bridge.client import connect_for_writing
    from bridge.indexes import IndexOptions
    from ingest.pipeline import ingest_corpus
    from ingest.readers import Fields, Shard

    shard = Shard.parse(shard_spec)
    encoder = ray_encoder(model_settings, ray_address, workers) or model_settings.load
    stats = ingest_corpus(
        corpus,
        # Connected once the input is known to hold records, checked before a model is loaded.
        client=functools.partial(connect_for_writing, settings, index),
        index=index,
        encoder=encoder,  # and this after the client may write
        fmt=fmt,
        fields=Fields(id=id_field, text=text_field, title=title_field or None),
        shard=shard,
        limit=limit,
        rejects=rejects,
        options=IndexOptions(
            engine=engine,
            analyzer=analyzer,
            compression=compression,
            m=m,
            ef_construction=ef_construction,
            shards=shards,
            replicas=replicas,
        ),
        progress=progress,
        sort_window=sort_window,
        max_wait=max_wait,
    )
    click.echo(f"{index}: {stats.summary()}")
    stats.raise_for_rejects()


def ray_encoder(
    model_settings: ModelSettings, address: str | None, workers: int | None
) -> Callable[[], object] | None:
    """What starts the Ray workers for --ray (checked now, started after the input is); None
    without --ray."""
    if address is None:
        if workers is not None:
            raise BadInput("--workers goes with --ray: add --ray (or leave --workers out).")
        return None
    if address != "local" and Path(address).exists():
        raise BadInput(
            f"--ray {address!r} names a file, not a Ray address: put the corpus before --ray, "
            "or write --ray=ADDRESS."
        )
    from ingest.distributed import require_ray

    require_ray()
    from ingest.distributed.workers import start_ray_encoder

    return functools.partial(
        start_ray_encoder,
        model_settings,
        address=None if address == "local" else address,
        workers=workers,
    )
