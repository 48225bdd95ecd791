"""Responses in OpenSearch's shape, so that Dashboards and every client read them as usual."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bridge.gateway.errors import GatewayError, UpstreamError
from bridge.gateway.shaping import JSON_TYPE, render, truthy

__all__ = ["JSON_TYPE", "error_response", "json_response", "search_response", "truthy"]


def search_response(
    *,
    took: float,
    first: Mapping[str, Any],
    total: int,
    hits: list[dict],
    max_score: float | None,
    params: Mapping[str, str],
) -> dict[str, Any]:
    """A search answer: the page of hits the gateway ranked, with the `_shards`, `timed_out`,
    aggregations and suggestions of the first stage (the search over the whole index)."""
    total_value: int | dict = (
        total if truthy(params, "rest_total_hits_as_int") else {"value": total, "relation": "eq"}
    )
    out: dict[str, Any] = {
        "took": int(round(took * 1000)),
        "timed_out": bool(first.get("timed_out", False)),
        "_shards": first.get("_shards", {}),
        "hits": {"total": total_value, "max_score": max_score, "hits": hits},
    }
    for key in ("aggregations", "suggest"):
        if key in first:
            out[key] = first[key]
    return out


def json_response(
    body: Any,
    *,
    status: int = 200,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
):
    """A JSON answer shaped by the caller's `filter_path`, `format` and `pretty`, with the
    cluster's Content-Type; `headers`: the engine's own (Elasticsearch's clients check
    `X-Elastic-Product` on every successful answer)."""
    data, content_type = render(body, params)
    sent = {**(headers or {}), "Content-Type": content_type}
    return web.Response(status=status, body=data, headers=sent)


def error_response(
    exc: GatewayError | UpstreamError, params: Mapping[str, str] | None = None
) -> web.Response:
    """A gateway error in OpenSearch's JSON, or the cluster's own error passed on as it was."""
    if isinstance(exc, UpstreamError):
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        content_type = exc.headers.get("content-type", JSON_TYPE)
        return web.Response(
            status=exc.status, body=exc.body, headers={**headers, "Content-Type": content_type}
        )
    return json_response(exc.body(), status=exc.status, params=params, headers=exc.headers)
