"""`dotbridge serve`: load the models, check the cluster, run the gateway until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.config import DEFAULT_GATEWAY_PORT, ConnectionSettings, ModelSettings
from bridge.errors import BadInput
from bridge.gateway.limits import Limits

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_GATEWAY_PORT
TOKEN_VARIABLE = "DOTBRIDGE_SERVE_TOKEN"  # a token for the gateway's own API (never a flag)


@dataclass(frozen=True, kw_only=True)
class GatewayOptions:
    """Where the gateway listens and how it batches and caches."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    meta_ttl: float = 5.0
    max_batch: int = 64
    batch_wait_ms: float = 0.0
    passage_chunk: int | None = None  # model-API passages per forward pass (None: by device)
    access_log: bool = False
    limits: Limits = Limits()
    certfile: str | None = None  # TLS on the gateway's own port, with keyfile
    keyfile: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    strip_headers: tuple[str, ...] = ()  # more identity headers to drop (the cluster's own)
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
    passage_chunk: int | None = None,
    limits: Limits | None = None,
    cache_size: int = 0,
    cache_ttl: float = 0.0,
):
    """Every model the gateway serves, loaded once; BadInput for one that cannot be loaded."""
    from bridge.gateway.batcher import passage_chunk_for
    from bridge.gateway.models import Models, ServedModel
    from bridge.gateway.vector_cache import VectorCache

    if not options.models:
        raise BadInput("Give at least one --model to serve.")
    limits = limits or Limits()
    served = []
    for model in options.models:
        encoder = options.settings(model).load()
        served.append(
            ServedModel.load(
                encoder,
                max_batch=max_batch,
                max_wait=batch_wait_ms / 1000.0,
                max_queue=limits.max_queue,
                timeout=limits.encode_timeout,
                nice=limits.encoder_nice,
                chunk=passage_chunk or passage_chunk_for(encoder.device),
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
    from bridge.gateway.identity import Identity

    try:
        identity = Identity(options.trusted_proxies, options.strip_headers)
    except ValueError as exc:
        raise BadInput(f"{exc}.") from None
    tls = server_tls(options)
    client = connect(settings, check=True)
    backend = backend_of(client)
    client.close()
    models = load_models(
        model_options,
        max_batch=options.max_batch,
        batch_wait_ms=options.batch_wait_ms,
        passage_chunk=options.passage_chunk,
        limits=options.limits,
        cache_size=options.query_cache_size,
        cache_ttl=options.query_cache_ttl,
    )
    try:
        _run(_serve(settings, options, models, say, backend, identity, tls))
    finally:
        models.close()  # when start-up failed; else already closed inside the loop


def server_tls(options: GatewayOptions):
    """The gateway port's TLS context from --certfile/--keyfile (None: plain HTTP)."""
    import ssl

    if not options.certfile and not options.keyfile:
        return None
    if not (options.certfile and options.keyfile):
        raise BadInput("Give both --certfile and --keyfile for TLS on the gateway's port.")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.certfile, options.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(
            f"Cannot use {options.certfile} and {options.keyfile} for TLS ({exc}): give a PEM "
            "certificate and its unencrypted private key."
        ) from None
    return context


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(settings, options: GatewayOptions, models, say, backend, identity, tls) -> None:
    from aiohttp import web

    from bridge.gateway.app import create_app
    from bridge.gateway.identity import Authenticator
    from bridge.gateway.models import IndexResolver
    from bridge.gateway.upstream import Upstream

    limits = options.limits
    logging.getLogger("aiohttp.server").addFilter(QuietProtocolErrors())
    upstream = Upstream(
        settings,
        backend=backend,
        read_timeout=limits.read_timeout,
        hold_timeout=limits.hold_timeout,
    )
    resolver = IndexResolver(upstream, models, ttl=options.meta_ttl)
    auth = Authenticator(upstream, ttl=options.meta_ttl, token=os.environ.get(TOKEN_VARIABLE))
    app = create_app(upstream, models, resolver, limits=limits, identity=identity, auth=auth)
    # Bodies pass through as sent: a gzipped bulk stays gzipped (searches are decoded to read).
    # A caller that hangs up cancels its handler: its staged searches and queued encodes too.
    runner = web.AppRunner(
        app,
        access_log=log if options.access_log else None,
        auto_decompress=False,
        handler_cancellation=True,
        keepalive_timeout=limits.read_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, reuse_address=True, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInput(
                    f"Port {options.port} on {options.host} is in use: pick another --port."
                ) from None
            raise BadInput(f"Cannot listen on {options.host}:{options.port}: {exc}.") from None
        names = ", ".join(m.name for m in models.served)
        scheme = "https" if tls is not None else "http"
        say(
            f"dotbridge gateway on {scheme}://{options.host}:{options.port} in front of "
            f"{backend.product} at {settings.safe_url} (models: {names})"
        )
        if tls is None and not is_loopback(options.host):
            log.warning(
                "the gateway listens on %s without TLS: credentials and session cookies cross "
                "the network in clear; give --certfile and --keyfile",
                options.host,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        # Requests in flight finish first, then the encoder threads end while the loop still
        # runs to take their last answers.
        await runner.cleanup()
        await asyncio.to_thread(models.close)


class QuietProtocolErrors(logging.Filter):
    """aiohttp's own log of a malformed request or a caller gone in one line, not a traceback:
    strangers' bytes are the gateway's daily bread, not its failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError | asyncio.CancelledError):
            text = getattr(exc, "message", "") or str(exc) or type(exc).__name__
            first = next((line.strip(" :") for line in str(text).splitlines() if line.strip()), "")
            record.msg = "refused a request that is not valid HTTP (%s): %s"
            record.args = (type(exc).__name__, first)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


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
