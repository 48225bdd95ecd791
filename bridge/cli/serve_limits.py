"""`dotbridge serve`'s limits on what one request may ask (one flag each, gathered as Limits)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from bridge.gateway.limits import Limits

DEFAULTS = Limits()

# (flag, Limits field, type, help)
FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--max-body", "max_body", click.IntRange(1024), "Largest request body read, in bytes (413)."),
    (
        "--max-inflated",
        "max_inflated",
        click.IntRange(1024),
        "Largest search body once gzip/deflate is undone, in bytes (413).",
    ),
    (
        "--max-ratio",
        "max_ratio",
        click.IntRange(1),
        "Largest inflated:compressed ratio past the first MiB (413).",
    ),
    ("--max-depth", "max_depth", click.IntRange(2), "Deepest JSON nesting in a search (400)."),
    ("--max-neural", "max_neural", click.IntRange(1), "Most neural clauses per request (400)."),
    ("--max-texts", "max_texts", click.IntRange(1), "Most texts per _embed call (413)."),
    (
        "--max-chars",
        "max_chars",
        click.IntRange(1),
        "Most characters per _embed call, all texts together (413).",
    ),
    (
        "--max-queue",
        "max_queue",
        click.IntRange(1),
        "Most texts waiting for a model's encoder, per kind (429 with Retry-After).",
    ),
    (
        "--encode-timeout",
        "encode_timeout",
        click.FloatRange(0.1),
        "Seconds a request waits for the encoder (429 past it).",
    ),
    (
        "--max-staged",
        "max_staged",
        click.IntRange(1),
        "Most searches with the model running at once (429 past it).",
    ),
    (
        "--read-timeout",
        "read_timeout",
        click.FloatRange(0.1),
        "Seconds for a caller's body to arrive, or for it to take the next chunk of an answer.",
    ),
    (
        "--hold-timeout",
        "hold_timeout",
        click.FloatRange(0.1),
        "Seconds one answer may hold a pooled cluster connection.",
    ),
    (
        "--encoder-nice",
        "encoder_nice",
        click.IntRange(0, 19),
        "How far the model's threads sit below the event loop in CPU priority (Linux nice; 0: "
        "same priority), so pass-through traffic keeps its pace while the model fills the cores.",
    ),
)


def limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The limit flags, handed to the command as one `limits` argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {field: kwargs.pop(field) for _, field, _, _ in FLAGS}
        return func(*args, limits=Limits(**values), **kwargs)

    for flag, field, kind, text in reversed(FLAGS):
        default = getattr(DEFAULTS, field)
        wrapper = click.option(
            flag, field, default=default, show_default=True, type=kind, help=text
        )(wrapper)
    return wrapper
