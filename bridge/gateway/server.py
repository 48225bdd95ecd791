"""`dotbridge serve`: load the models, check the cluster, run the gateway until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.config import DEFAULT_GATEWAY_PORT, ConnectionSettings, ModelSettings
from bridge.errors import BadInput

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_GATEWAY_PORT


@dataclass(frozen=True, kw_only=True)
class GatewayOptions:
    """Where the gateway listens and how it batches and caches."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    meta_ttl: float = 5.0
    max_batch: int = 64
    batch_wait_ms: float = 0.0
    access_log: bool = False
    query_cache_size: int = 10_000  # query vectors kept per model (0: no cache)
    query_cache_ttl: float = 600.0  # seconds a cached query vector lives


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The models served (directories or hub ids) and the encoder settings they share."""

    models: tuple[str, ...]
    encoder: ModelSettings = ModelSettings()  # its model unset; quantize None: none

    def settings(self, model: str) -> ModelSettings:
        """One served model's settings, loaded the way every command loads its model."""
        return dataclasses.replace(self.encoder, model=model)


def load_models(
    options: ModelOptions,
    *,
    max_batch: int,
    batch_wait_ms: float,
    cache_size: int = 0,
    cache_ttl: float = 0.0,
):
    """Every model the gateway serves, loaded once; BadInput for one that cannot be loaded."""
    from bridge.gateway.models import Models, ServedModel
    from bridge.gateway.vector_cache import VectorCache

    if not options.models:
        raise BadInput("Give at least one --model to serve.")
    served = []
    for model in options.models:
        encoder = options.settings(model).load()
        served.append(
            ServedModel.load(
                encoder,
                max_batch=max_batch,
                max_wait=batch_wait_ms / 1000.0,
                cache=VectorCache(cache_size, cache_ttl),
            )
        )
    return Models(served)


def serve(
    settings: ConnectionSettings,
    options: GatewayOptions,
    model_options: ModelOptions,
    *,
    say: Callable[[str], None] = print,
) -> None:
    """Run the gateway in front of the cluster until SIGINT or SIGTERM."""
    from bridge.backends import backend_of
    from bridge.client import connect

    # The start-up check is the only request made with the gateway's own credentials; it also
    # tells which engine the cluster is (OpenSearch or Elasticsearch).
    client = connect(settings, check=True)
    backend = backend_of(client)
    client.close()
    models = load_models(
        model_options,
        max_batch=options.max_batch,
        batch_wait_ms=options.batch_wait_ms,
        cache_size=options.query_cache_size,
        cache_ttl=options.query_cache_ttl,
    )
    try:
        _run(_serve(settings, options, models, say, backend))
    finally:
        models.close()


async def _serve(settings, options: GatewayOptions, models, say, backend) -> None:
    from aiohttp import web

    from bridge.gateway.app import create_app
    from bridge.gateway.models import IndexResolver
    from bridge.gateway.upstream import Upstream

    upstream = Upstream(settings, backend=backend)
    resolver = IndexResolver(upstream, models, ttl=options.meta_ttl)
    app = create_app(upstream, models, resolver)
    # Bodies pass through as sent: a gzipped bulk stays gzipped (searches are decoded to read).
    runner = web.AppRunner(
        app, access_log=log if options.access_log else None, auto_decompress=False
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInput(
                    f"Port {options.port} on {options.host} is in use: pick another --port."
                ) from None
            raise BadInput(f"Cannot listen on {options.host}:{options.port}: {exc}.") from None
        names = ", ".join(m.name for m in models.served)
        say(
            f"dotbridge gateway on http://{options.host}:{options.port} in front of "
            f"{backend.product} at {settings.safe_url} (models: {names})"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(main) -> None:
    """asyncio.run, on uvloop when it is installed (a faster event loop, same behaviour)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def print_connectors(public_url: str, model_names: Sequence[str], index: str) -> str:
    """The ml-commons requests for each model, as Dev Tools text."""
    from bridge.gateway.connectors import alias_note, connector_requests, render
    from bridge.gateway.models import model_name

    blocks = [alias_note(index)]
    for model in model_names:
        blocks.append(render(connector_requests(public_url, model_name(model), index)))
    return "\n".join(blocks)
