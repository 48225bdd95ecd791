"""Relaying the cluster's answers to callers, safe against slow and failing peers on both sides.

A small answer is read whole and sent as one response. A large one is sent as it arrives, but
read from the cluster as fast as the cluster sends it into a temporary file, so a caller that
reads slowly (or never) does not hold one of the pooled cluster connections: the connection
goes back to the pool once the answer is in, or after `hold_timeout` seconds at the most. A
cluster that fails half-way aborts the caller's connection (the caller sees it broken, as it
would from the cluster itself), never a second response written into the first one's body. A
caller that does not take a chunk within `read_timeout` seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

CHUNK = 1 << 16
SMALL_BODY = 1 << 20
# Headers that belong to one connection (RFC 9110 7.6.1): never relayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


async def timed_body(content: aiohttp.StreamReader, timeout: float) -> AsyncIterator[bytes]:
    """A caller's streamed body, each read within `timeout` seconds (else TimeoutError)."""
    while True:
        chunk = await asyncio.wait_for(content.readany(), timeout)
        if not chunk:
            return
        yield chunk


class Spool:
    """An answer written to a temporary file by one task while another reads it."""

    def __init__(self) -> None:
        # Closed by the task that sends it on, once it is done with it.
        self.file = tempfile.TemporaryFile()  # noqa: SIM115
        self.size = 0
        self.done = False
        self.failed: BaseException | None = None
        self.grown = asyncio.Event()

    async def fill(self, content: aiohttp.StreamReader) -> None:
        try:
            async for chunk in content.iter_chunked(CHUNK):
                os.pwrite(self.file.fileno(), chunk, self.size)
                self.size += len(chunk)
                self.grown.set()
            self.done = True
        except (Exception, asyncio.CancelledError) as exc:
            self.failed = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.grown.set()

    def read(self, position: int) -> bytes:
        return os.pread(self.file.fileno(), min(CHUNK, self.size - position), position)

    def close(self) -> None:
        self.file.close()


def relayed_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP)


async def relay(
    request: web.BaseRequest,
    upstream: aiohttp.ClientResponse,
    *,
    read_timeout: float,
    hold_timeout: float,
) -> tuple[web.StreamResponse, asyncio.Task | None]:
    """The caller's response to the cluster's answer. For a large answer, also the task that
    sends it on; the caller awaits it after the cluster connection is released."""
    headers = relayed_headers(upstream)
    length = upstream.content_length
    if request.method == "HEAD" or (length is not None and length <= SMALL_BODY):
        body = b"" if request.method == "HEAD" else await upstream.read()
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body)
        response.headers.clear()
        response.headers.extend(headers)
        if request.method == "HEAD" and length is not None:
            response.headers["Content-Length"] = str(length)
        return response, None
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    headers.popall("Content-Length", None)
    response.headers.extend(headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    spool = Spool()
    sender = asyncio.create_task(send(request, response, spool, read_timeout))
    try:
        await asyncio.wait_for(spool.fill(upstream.content), hold_timeout)
    except TimeoutError as exc:
        spool.failed = exc
        spool.grown.set()
    except asyncio.CancelledError:
        sender.cancel()
        spool.close()
        raise
    return response, sender


async def send(
    request: web.BaseRequest, response: web.StreamResponse, spool: Spool, read_timeout: float
) -> None:
    """The spooled answer to the caller as it grows; the caller's connection aborted when the
    cluster failed half-way or the caller stopped reading."""
    position = 0
    try:
        while True:
            if position < spool.size:
                chunk = spool.read(position)
                await asyncio.wait_for(response.write(chunk), read_timeout)
                position += len(chunk)
                continue
            if spool.failed is not None:
                log.warning(
                    "the cluster's answer to %s %s broke off after %d bytes (%s): "
                    "the caller's connection is closed",
                    request.method,
                    request.rel_url.path,
                    spool.size,
                    type(spool.failed).__name__,
                )
                abort(request)
                return
            if spool.done:
                return
            spool.grown.clear()
            await spool.grown.wait()
    except (TimeoutError, ConnectionError):
        abort(request)  # a caller that does not read, or left
    finally:
        spool.close()


def abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.abort()
