"""The cluster behind the gateway: pass-through forwarding and the JSON requests made for a caller.

Every request carries the caller's own headers (credentials included) and nothing of the
gateway's: the gateway's configured credentials serve only its start-up check. Responses are
passed back unchanged: status, headers, (compressed) bytes, streamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bridge.config import ConnectionSettings
from bridge.gateway import jsoncodec
from bridge.gateway.errors import UpstreamError, UpstreamUnavailable
from bridge.gateway.hosts import HostRing
from bridge.gateway.relay import HOP_BY_HOP, relay, timed_body
from bridge.search.bodies import engine

if TYPE_CHECKING:
    from bridge.backends import Backend

log = logging.getLogger(__name__)

# A caller's headers that describe its own body or encoding, not itself: dropped on the JSON
# requests the gateway makes for it (which have bodies and encodings of their own, and read the
# answer as plain JSON: elasticsearch-py's `Accept: ...; compatible-with=8` would demand the same
# of the gateway's Content-Type).
BODY_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "accept",
        "accept-encoding",
        "expect",
    }
)
# Headers that change per request without changing who the caller is (not part of a cache key).
PER_REQUEST_HEADERS = frozenset({"x-opaque-id", "traceparent", "tracestate", "user-agent"})
# Headers an error response keeps when the gateway passes a cluster's error on.
ERROR_HEADERS = ("www-authenticate", "x-opaque-id", "content-type")


def forward_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """A pass-through request's headers: all but the hop-by-hop ones, Host, and Expect (the
    gateway already answered the caller's `100-continue` and has the body)."""
    dropped = HOP_BY_HOP | {"host", "expect"}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def caller_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that say who the caller is (Authorization, cookies, proxy-auth, tenant,
    x-opaque-id), for the requests the gateway makes on its behalf."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in BODY_HEADERS
    }


def identity_key(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What makes two callers the same for a cache: their headers less the per-request ones."""
    return tuple(
        sorted((k.lower(), v) for k, v in headers.items() if k.lower() not in PER_REQUEST_HEADERS)
    )


def ssl_context(settings: ConnectionSettings) -> ssl.SSLContext | bool:
    """TLS as configured: verified by default (against --ca-certs when given), or not at all."""
    if not settings.verify_certs:
        return False
    return ssl.create_default_context(cafile=settings.ca_certs)


class Upstream:
    """One pooled HTTP client to the cluster, shared by every request of the gateway; `backend`
    is the cluster's engine, whose syntax the rewritten searches use (OpenSearch by default)."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        pool_size: int = 64,
        backend: Backend | None = None,
        read_timeout: float = 60.0,
        hold_timeout: float = 120.0,
    ) -> None:
        self.backend = engine(backend)
        # Never the URL's user:password part: the gateway lends no credentials to its callers.
        self.hosts = HostRing(settings.url)  # one node or several: bridge.gateway.hosts
        self.base = self.hosts.label
        self.timeout = settings.timeout
        self._settings = settings
        self._pool_size = pool_size
        self.read_timeout = read_timeout
        self.hold_timeout = hold_timeout
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, ssl=ssl_context(self._settings), keepalive_timeout=30
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            # The bytes pass through as the cluster sent them (gzip included).
            auto_decompress=False,
            # Add nothing the caller did not send.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            # Cookies a cluster sets belong to one caller: never kept for the next.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.timeout),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def url(self, raw_path_qs: str, host: str | None = None) -> URL:
        """The cluster URL of a raw (still percent-encoded) path with its query string."""
        return URL((host or self.hosts.urls[0]) + raw_path_qs, encoded=True)

    async def forward(
        self,
        request: web.Request,
        body: bytes | None = None,
        *,
        raw_path_qs: str | None = None,
        rewritten: bool = False,
    ) -> web.StreamResponse:
        """The caller's request sent on unchanged, and the cluster's answer streamed back
        unchanged. `body`: the caller's body, already read; with `rewritten`, a JSON body that
        the gateway wrote in place of the caller's."""
        assert self.session is not None
        headers = forward_headers(request.headers)
        data: Any
        if body is not None:
            data = body
            headers["Content-Length"] = str(len(body))
            if rewritten:
                headers.popall("Content-Encoding", None)
                # JSON still: the caller's JSON media type stays (Elasticsearch demands that it
                # match a versioned Accept, `application/vnd.elasticsearch+json; compatible-with`).
                sent = headers.get("Content-Type", "")
                headers["Content-Type"] = sent if "json" in sent else "application/json"
        elif request.body_exists:
            # Streamed (a bulk body is never held whole), each read within the read timeout.
            data = timed_body(request.content, self.read_timeout)
        else:
            data = None
        path_qs = raw_path_qs if raw_path_qs is not None else request.rel_url.raw_path_qs
        session = self.session
        streamed = body is None and request.body_exists  # sent once: it cannot be replayed

        async def attempt(host: str) -> aiohttp.ClientResponse:
            url = self.url(path_qs, host)
            return await session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            )

        try:
            upstream = await self.hosts.send(
                attempt, method=request.method, path=path_qs, body_again=not streamed
            )
            async with upstream:
                response, sender = await relay(
                    request,
                    upstream,
                    read_timeout=self.read_timeout,
                    hold_timeout=self.hold_timeout,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(self.unavailable(exc)) from exc
        if sender is not None:  # a large answer, sent on after its connection went back
            try:
                await sender
            except asyncio.CancelledError:
                sender.cancel()
                raise
        return response

    async def call(
        self,
        method: str,
        path: str,
        caller: Mapping[str, str],
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        ndjson: bool = False,
    ) -> Any:
        """A JSON request made for a caller (with its headers); the parsed answer.

        UpstreamError carries a cluster's error answer back to the caller as it was;
        UpstreamUnavailable says that the cluster did not answer.
        """
        assert self.session is not None
        headers = dict(caller)
        data: bytes | None = None
        if body is not None:
            if ndjson:
                data = b"".join(jsoncodec.dumps(line) + b"\n" for line in body)
                headers["Content-Type"] = "application/x-ndjson"
            else:
                data = jsoncodec.dumps(body)
                headers["Content-Type"] = "application/json"
        session = self.session

        async def attempt(host: str) -> tuple[aiohttp.ClientResponse, bytes]:
            url = self.url(path, host)
            if params:
                url = url.update_query(params)
            async with session.request(
                method, url, headers=headers, data=data, auto_decompress=True
            ) as resp:
                return resp, await resp.read()

        try:
            resp, raw = await self.hosts.send(attempt, method=method, path=path)
            if resp.status >= 300:
                kept = {k: resp.headers[k] for k in ERROR_HEADERS if k in resp.headers}
                raise UpstreamError(resp.status, raw, kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(self.unavailable(exc)) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise UpstreamUnavailable(
                f"The cluster at {self.base} sent an answer that is not JSON to {method} {path}."
            ) from exc

    def unavailable(self, exc: BaseException) -> str:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"The cluster at {self.base} did not answer ({detail}): check that it is up."
