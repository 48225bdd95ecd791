"""The gateway's limits on what one request may ask: body and inflated sizes, JSON depth, neural
clauses, model-API texts. Each is a `dotbridge serve` flag; past one, the caller gets one
sentence in OpenSearch's error JSON (413 or 400), never a traceback or a stalled event loop.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from typing import Any

from bridge.gateway.errors import BadRequest, TooLarge

MiB = 1 << 20
INFLATE_CHUNK = 1 << 18  # inflated a quarter MiB at a time: the cap is checked as it grows
# Characters kept of one text for the model: a token covers at least one character (almost
# always several), so this keeps the model's whole window while the tokenizer never sees more.
CHARS_PER_TOKEN = 16


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one request may ask of the gateway (the `serve` flags of the same names)."""

    max_body: int = 100 * MiB  # OpenSearch's own http.max_content_length
    max_inflated: int = 32 * MiB
    max_ratio: int = 100  # inflated:compressed, checked past the first MiB
    max_depth: int = 100
    max_neural: int = 100
    max_texts: int = 4096  # per model-API call
    max_chars: int = 8_000_000  # per model-API call, all texts together
    max_queue: int = 8192  # texts waiting for one model's encoder, per kind
    encode_timeout: float = 30.0
    max_staged: int = 64  # searches with dotbridge features running at once
    read_timeout: float = 60.0  # one read from a caller or from the cluster
    hold_timeout: float = 120.0  # how long one answer may hold a pooled cluster connection
    encoder_nice: int = 10  # the model's threads yield the CPU to the event loop and the cluster

    def inflate_cap(self, compressed: int) -> int:
        return min(self.max_inflated, max(MiB, self.max_ratio * compressed))


WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def inflate(raw: bytes, encoding: str | None, limits: Limits) -> bytes | None:
    """The body without its Content-Encoding (opensearch-py gzips request bodies), inflated on
    a worker thread in bounded steps; TooLarge past the cap; None when the gateway cannot read
    it (unknown encoding, broken stream: the request then passes through as it is)."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return raw
    wbits = WBITS.get(name)
    if wbits is None:
        return None
    return await asyncio.to_thread(_inflate, raw, wbits, limits.inflate_cap(len(raw)))


def _inflate(raw: bytes, wbits: int, cap: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    total = 0
    data = raw
    try:
        while data and not inflater.eof:
            chunk = inflater.decompress(data, INFLATE_CHUNK)
            total += len(chunk)
            if total > cap:
                raise TooLarge(
                    f"The request body inflates to more than {cap:,} bytes: send a smaller "
                    "search (the gateway's --max-inflated and --max-ratio limits)."
                )
            parts.append(chunk)
            data = inflater.unconsumed_tail
    except zlib.error:
        return None
    return b"".join(parts) if inflater.eof else None


def loads(raw: bytes | str, limits: Limits) -> Any:
    """JSON no deeper than the limit; ValueError when it is not JSON, BadRequest when too deep."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep(limits) from None
    check_depth(value, limits)
    return value


def too_deep(limits: Limits) -> BadRequest:
    return BadRequest(
        f"The request body nests JSON more than {limits.max_depth} levels deep: "
        "send a flatter body (the gateway's --max-depth limit)."
    )


def check_depth(value: Any, limits: Limits) -> None:
    """BadRequest when objects and arrays nest deeper than the limit (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limits.max_depth:
            raise too_deep(limits)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def count_neural(body: Any) -> int:
    """The neural clauses in a (depth-checked) body."""
    from bridge.gateway.rewrite import neural_clause

    count, stack = 0, [body]
    while stack:
        node = stack.pop()
        if neural_clause(node) is not None:
            count += 1
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def check_neural(count: int, limits: Limits) -> None:
    if count > limits.max_neural:
        raise BadRequest(
            f"The request has {count} neural clauses, more than {limits.max_neural}: "
            "send fewer (the gateway's --max-neural limit)."
        )


def check_texts(texts: list[str], limits: Limits) -> None:
    """A model-API call's texts within the limits (413 past them)."""
    if len(texts) > limits.max_texts:
        raise TooLarge(
            f"At most {limits.max_texts} texts per embedding request, got {len(texts)}: "
            "send them in several requests."
        )
    chars = sum(len(t) for t in texts)
    if chars > limits.max_chars:
        raise TooLarge(
            f"The texts hold {chars:,} characters, more than {limits.max_chars:,} per "
            "embedding request: send them in several requests."
        )


def clipped(texts: list[str], max_tokens: int) -> list[str]:
    """Each text cut to what the model's window can read, before the tokenizer sees it."""
    keep = max(1, max_tokens) * CHARS_PER_TOKEN
    return [t if len(t) <= keep else t[:keep] for t in texts]
