"""`_msearch` through the gateway: items with dotbridge features run as `_search` would; the
others go to the cluster together in one `_msearch`, and the answers come back in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from bridge.gateway.discover import split_alias
from bridge.gateway.errors import GatewayError, UpstreamError, as_gateway_error
from bridge.gateway.executor import Forward
from bridge.gateway.rewrite import has_markers
from bridge.gateway.upstream import Upstream

# Header keys of an _msearch item that mean what the same query-string parameter means.
HEADER_PARAMS = (
    "preference",
    "routing",
    "search_type",
    "request_cache",
    "allow_partial_search_results",
    "expand_wildcards",
    "ignore_unavailable",
    "allow_no_indices",
)

# Runs one item's search: (item's index name, its raw target, body, params) -> a Forward to
# send with the plain items, a finished answer, or None (nothing to do: sent as it was).
RunItem = Callable[[str, str, dict, Mapping[str, str]], Awaitable[Forward | dict | None]]


def parse_ndjson(raw: bytes) -> list[tuple[dict, dict, bytes]] | None:
    """(header, body, body line) pairs; None when the body is not well-formed (the cluster then
    answers it with its own error)."""
    lines = [line for line in raw.split(b"\n") if line.strip()]
    if len(lines) % 2:
        return None
    items = []
    try:
        for header_line, body_line in zip(lines[::2], lines[1::2], strict=True):
            header, body = json.loads(header_line), json.loads(body_line)
            if not (isinstance(header, dict) and isinstance(body, dict)):
                return None
            items.append((header, body, body_line))
    except ValueError:
        return None
    return items


def item_target(header: dict, path_target: str | None) -> tuple[str, str] | None:
    """(name, raw target for a URL) of an item: its header's index, else the path's."""
    index = header.get("index")
    if isinstance(index, list):
        index = ",".join(str(i) for i in index)
    if isinstance(index, str) and index:
        return index, quote(index, safe=",*")
    if path_target:
        return path_target, quote(path_target, safe=",*")
    return None


def item_params(header: dict, params: Mapping[str, str]) -> dict[str, str]:
    out = dict(params)
    for key in HEADER_PARAMS:
        if key in header:
            value = header[key]
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def is_special(header: dict, body_line: bytes, path_target: str | None) -> bool:
    target = item_target(header, path_target)
    return has_markers(body_line) or (target is not None and split_alias(target[0]) is not None)


async def run_msearch(
    upstream: Upstream,
    caller: Mapping[str, str],
    raw_path: str,
    path_target: str | None,
    params: Mapping[str, str],
    items: list[tuple[dict, dict, bytes]],
    run_item: RunItem,
) -> dict[str, Any]:
    """The answers of every item in order, as the cluster's `_msearch` gives them."""
    began = time.perf_counter()
    answers: list[dict | None] = [None] * len(items)
    plain: list[tuple[int, dict, dict]] = []

    async def special(i: int, header: dict, body: dict) -> None:
        target = item_target(header, path_target)
        try:
            if target is None:
                raise GatewayError(400, "An _msearch item with dotbridge features needs an index.")
            result = await run_item(target[0], target[1], body, item_params(header, params))
        except UpstreamError as exc:
            answers[i] = {"error": exc.error(), "status": exc.status}
            return
        except Exception as exc:
            error = as_gateway_error(exc)
            if error is None:
                raise
            answers[i] = {**error.body()}
            return
        if result is None:
            plain.append((i, header, body))
        elif isinstance(result, Forward):
            plain.append((i, {**result.add, **header}, result.body))
        else:
            answers[i] = {**result, "status": 200}

    jobs = []
    for i, (header, body, line) in enumerate(items):
        if is_special(header, line, path_target):
            jobs.append(special(i, header, body))
        else:
            plain.append((i, header, body))
    await asyncio.gather(*jobs)
    if plain:
        plain.sort()
        lines: list[dict] = []
        for _, header, body in plain:
            lines += [header, body]
        resp = await upstream.call("POST", raw_path, caller, lines, params=params, ndjson=True)
        for (i, _, _), answer in zip(plain, resp["responses"], strict=True):
            answers[i] = answer
    return {"took": int(round((time.perf_counter() - began) * 1000)), "responses": answers}
