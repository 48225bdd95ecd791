"""`dotbridge serve` (the search gateway) and `dotbridge aliases` (its per-mode aliases), through
bridge.gateway."""

from __future__ import annotations

import click

from bridge.cli.options import connection_options, encoder_options, names
from bridge.cli.serve_limits import limit_options
from bridge.config import DEFAULT_GATEWAY_PORT, MODES, SEED_MODEL, ConnectionSettings, ModelSettings
from bridge.gateway.limits import Limits


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=DEFAULT_GATEWAY_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    default=(SEED_MODEL,),
    show_default=True,
    help="A model to serve (Hugging Face id or local directory); repeat for several.",
)
@encoder_options(
    quantize_help="int8 (ONNX Runtime): for indexes built with --quantize int8 (another model "
    "for an index). Default: none."
)
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
    "--passage-chunk",
    type=click.IntRange(1),
    help="Passages of a model-API call encoded per forward pass; searches waiting meanwhile "
    "go between chunks.  [default: 2 on the CPU, 32 on a GPU]",
)
@click.option(
    "--meta-ttl",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds an index's _meta is cached per caller (0: read it for every search).",
)
@click.option(
    "--query-cache-size",
    default=10_000,
    show_default=True,
    type=click.IntRange(0),
    help="Query vectors kept per model, so that a repeated text costs no encode (0: none).",
)
@click.option(
    "--query-cache-ttl",
    default=600.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds a cached query vector is kept (0: no cache).",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@limit_options
@click.option(
    "--certfile",
    type=click.Path(dir_okay=False),
    help="TLS certificate (PEM) for the gateway's port.",
)
@click.option(
    "--keyfile", type=click.Path(dir_okay=False), help="Its private key (PEM), with --certfile."
)
@click.option(
    "--trusted-proxies",
    multiple=True,
    help="Addresses or networks (comma-separated, repeatable) of load balancers whose "
    "X-Forwarded-*, X-Real-IP, Forwarded and proxy-auth headers may pass. Default: none.",
)
@click.option(
    "--strip-header",
    "strip_headers",
    multiple=True,
    help="Another header callers may not set (the cluster's own proxy-auth headers); repeatable.",
)
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
    encoder: ModelSettings,
    max_batch: int,
    batch_wait_ms: float,
    passage_chunk: int | None,
    meta_ttl: float,
    query_cache_size: int,
    query_cache_ttl: float,
    access_log: bool,
    limits: Limits,
    certfile: str | None,
    keyfile: str | None,
    trusted_proxies: tuple[str, ...],
    strip_headers: tuple[str, ...],
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
            passage_chunk=passage_chunk,
            access_log=access_log,
            limits=limits,
            certfile=certfile,
            keyfile=keyfile,
            trusted_proxies=trusted_proxies,
            strip_headers=strip_headers,
            query_cache_size=query_cache_size,
            query_cache_ttl=query_cache_ttl,
        ),
        ModelOptions(models=models, encoder=encoder),
        say=click.echo,
    )


@click.command()
@click.argument("index")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Which per-mode aliases.")
@click.option("--remove", is_flag=True, help="Remove the aliases instead.")
@connection_options
def aliases(index: str, modes: str, remove: bool, settings: ConnectionSettings) -> None:
    """Add INDEX.bm25, INDEX.rerank, INDEX.knn and INDEX.hybrid: aliases whose searches the
    gateway runs in that mode (for Discover index patterns)."""
    from bridge.client import connect
    from bridge.gateway.aliases import mode_aliases

    changed = mode_aliases(connect(settings), index, names(modes), remove=remove)
    click.echo(("removed: " if remove else "added: ") + ", ".join(changed))
