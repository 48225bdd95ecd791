"""The `dotbridge` command: subcommands parse flags and call library functions, nothing more."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge import local_node
from bridge.config import ConnectionSettings
from bridge.errors import BadInput, RejectedRecords
from ingest.readers import FORMATS
from mappings import ANALYZERS, ENGINES

if TYPE_CHECKING:
    from bridge.encoder import Encoder


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same connection settings on every command; the password only from env or a prompt."""

    @click.option("--url", envvar="OPENSEARCH_URL", help="Cluster URL [env OPENSEARCH_URL].")
    @click.option("--user", envvar="OPENSEARCH_USER", help="User [env OPENSEARCH_USER].")
    @click.option(
        "--password",
        envvar="OPENSEARCH_PASSWORD",
        help="Password [env OPENSEARCH_PASSWORD]; never printed.",
        show_envvar=False,
    )
    @click.option(
        "--ca-certs",
        envvar="OPENSEARCH_CA_CERTS",
        type=click.Path(exists=True, dir_okay=False),
        help="CA bundle to verify the cluster's certificate [env OPENSEARCH_CA_CERTS].",
    )
    @click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify TLS certificates (not recommended).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, url, user, password, ca_certs, insecure, **kwargs: Any) -> Any:
        settings = ConnectionSettings.from_env(
            url=url,
            user=user,
            password=password,
            ca_certs=ca_certs,
            verify_certs=False if insecure else None,
        )
        return func(*args, settings=settings, **kwargs)

    return wrapper


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="dotbridge")
def main(verbose: int) -> None:
    """dotbridge: a neural bi-encoder in front of OpenSearch."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # opensearch-py logs every 404 as a warning; dotbridge reports what matters itself.
        logging.getLogger("opensearch").setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Which encoder to use; the same flags on every command that encodes."""

    @click.option(
        "--model",
        default="sebastian-hofstaetter/distilbert-dot-margin_mse-T2-msmarco",
        show_default=True,
        help="Hugging Face model id or local directory.",
    )
    @click.option("--pooling", type=click.Choice(["cls", "mean"]), help="Default: from the model.")
    @click.option("--normalize/--no-normalize", default=None, help="L2-normalize vectors.")
    @click.option("--similarity", type=click.Choice(["dot", "cosine"]), help="Default: dot.")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
    @click.option("--dtype", default="auto", show_default=True, help="auto, float32, float16.")
    @click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
    @functools.wraps(func)
    def wrapper(
        *args: Any, model, pooling, normalize, similarity, device, dtype, batch_size, **kwargs: Any
    ) -> Any:
        def load() -> Encoder:
            from bridge.encoder import Encoder, ModelLoadError

            try:
                return Encoder(
                    model,
                    pooling=pooling,
                    normalize=normalize,
                    similarity=similarity,
                    device=device,
                    dtype=dtype,
                    batch_size=batch_size,
                )
            except ModelLoadError as exc:
                raise BadInput(str(exc)) from exc

        return func(*args, load_encoder=load, **kwargs)

    return wrapper


# ---- ingest ----------------------------------------------------------------------------------


@main.command()
@click.argument("corpus")
@click.option("--index", required=True, help="Index to fill (created when missing).")
@model_options
@connection_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--id-field", default="_id", show_default=True, help="JSONL key of the id.")
@click.option("--text-field", default="text", show_default=True, help="JSONL key of the text.")
@click.option("--title-field", default="title", show_default=True, help="JSONL key of the title.")
@click.option(
    "--shard", "shard_spec", default="0/1", show_default=True, help="Take every N-th line: I/N."
)
@click.option("--limit", type=click.IntRange(1), help="Read only the first N lines.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), help="Rejects JSONL.")
@click.option("--engine", type=click.Choice(ENGINES), default="lucene", show_default=True)
@click.option("--analyzer", type=click.Choice(ANALYZERS), default="english", show_default=True)
@click.option("--m", default=16, show_default=True, type=click.IntRange(2), help="HNSW m.")
@click.option("--ef-construction", default=128, show_default=True, type=click.IntRange(2))
@click.option("--shards", default=1, show_default=True, type=click.IntRange(1))
@click.option("--replicas", default=0, show_default=True, type=click.IntRange(0))
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
def ingest(
    corpus: str,
    index: str,
    load_encoder: Callable[[], Encoder],
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
    m: int,
    ef_construction: int,
    shards: int,
    replicas: int,
    progress: bool | None,
) -> None:
    """Encode a collection and index text plus vectors (CORPUS: .jsonl/.tsv[.gz] or - for stdin).

    Records that cannot be indexed go to the rejects file with their reason; the exit status is
    non-zero when any were rejected. Running the same command again resumes an interrupted run.
    """
    from bridge.client import connect
    from ingest.pipeline import IndexOptions, RejectsFile
    from ingest.pipeline import ingest as run_ingest
    from ingest.readers import Fields, Shard, read_records

    shard = Shard.parse(shard_spec)
    rejects_path = rejects or Path(f"{index}.rejects.jsonl")
    fields = Fields(id=id_field, text=text_field, title=title_field or None)
    records = read_records(corpus, fmt=fmt, fields=fields, shard=shard, limit=limit)
    client = connect(settings)
    encoder = load_encoder()
    stats = run_ingest(
        records,
        client=client,
        index=index,
        encoder=encoder,
        rejects=RejectsFile(rejects_path),
        options=IndexOptions(
            engine=engine,
            analyzer=analyzer,
            m=m,
            ef_construction=ef_construction,
            shards=shards,
            replicas=replicas,
        ),
        batch_size=encoder.batch_size,
        progress=progress,
    )
    click.echo(f"{index}: {stats.summary()}")
    if stats.rejected:
        raise RejectedRecords(
            f"{stats.rejected} of {stats.read} records were rejected; reasons in {rejects_path}."
        )


# ---- opensearch --------------------------------------------------------------------------------


def node_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--version",
        "os_version",
        default=local_node.DEFAULT_VERSION,
        show_default=True,
        type=click.Choice(list(local_node.RELEASES)),
        help="OpenSearch version (with its k-NN plugin).",
    )
    @click.option("--port", default=local_node.DEFAULT_PORT, show_default=True, type=int)
    @click.option("--heap", default=local_node.DEFAULT_HEAP, show_default=True, help="JVM heap.")
    @click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DOTBRIDGE_HOME",
        help="Cache and node directory [env DOTBRIDGE_HOME].",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, os_version, port, heap, home, **kwargs: Any) -> Any:
        node = local_node.LocalNode(version=os_version, port=port, heap=heap, root=home)
        return func(*args, node=node, **kwargs)

    return wrapper


@main.group()
def opensearch() -> None:
    """Run the embedded local OpenSearch node (with the k-NN plugin)."""


@opensearch.command()
@node_options
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def start(node: local_node.LocalNode, timeout: float) -> None:
    """Download (once), assemble and start a local node; wait until it is healthy."""
    url = node.start(timeout=timeout)
    click.echo(f"OpenSearch {node.version} is up at {url} (home {node.home})")


@opensearch.command()
@node_options
def stop(node: local_node.LocalNode) -> None:
    """Stop the local node."""
    if node.stop():
        click.echo("OpenSearch stopped.")
    else:
        click.echo("No local node was running.")


@opensearch.command()
@connection_options
def status(settings: ConnectionSettings) -> None:
    """Print version, plugins and health of the cluster."""
    from bridge.client import connect

    client = connect(settings)
    info = client.info()
    health = client.cluster.health()
    plugins = sorted({p["component"] for p in client.cat.plugins(format="json")})
    click.echo(f"url:      {settings.url}")
    click.echo(f"version:  {info['version']['number']}")
    click.echo(f"cluster:  {health['cluster_name']} ({health['number_of_nodes']} nodes)")
    click.echo(f"health:   {health['status']}")
    click.echo(f"plugins:  {', '.join(plugins) or '(none)'}")
