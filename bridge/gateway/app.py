"""The gateway's web application: what is rewritten, what passes through, and its own endpoints.

Searches (`_search`, `_msearch`) with a dotbridge feature or on a per-mode name are run by the
executor; `/_dotbridge/...` is the gateway's own API (never an index: index names cannot start
with `_`); every other request passes through to the cluster unchanged. This module is the one
boundary where failures become answers: OpenSearch's error JSON, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import web

from bridge.gateway import executor, mlapi
from bridge.gateway.discover import split_alias
from bridge.gateway.errors import BadRequest, GatewayError, UpstreamError, as_gateway_error
from bridge.gateway.executor import Call, Forward
from bridge.gateway.models import IndexResolver, Models, NotDotbridge
from bridge.gateway.msearch import is_special, parse_ndjson, run_msearch
from bridge.gateway.responses import error_response, json_response
from bridge.gateway.rewrite import has_markers, hybrid_query, neural_texts, rerank_text
from bridge.gateway.upstream import Upstream, caller_headers

log = logging.getLogger(__name__)

SEARCH = re.compile(r"^/(?:(?P<target>[^/_][^/]*)/)?_search/?$")
MSEARCH = re.compile(r"^/(?:(?P<target>[^/_][^/]*)/)?_msearch/?$")
EMBED = re.compile(r"^/_dotbridge/models/(?P<name>[^/]+)/_embed/?$")
RERANK = re.compile(r"^/_dotbridge/rerank/(?P<index>[^/_][^/]*)/?$")
MAX_BODY = 100 * 1024 * 1024  # OpenSearch's own http.max_content_length default


class Gateway:
    """The request handler: one per application, holding the cluster client and the models."""

    def __init__(self, upstream: Upstream, models: Models, resolver: IndexResolver) -> None:
        self.upstream = upstream
        self.models = models
        self.resolver = resolver

    async def handle(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        try:
            path = request.rel_url.raw_path
            if path.startswith("/_dotbridge"):
                return await self.own(request, path)
            if request.method in ("GET", "POST"):
                match = SEARCH.match(path)
                if match:
                    return await self.search(request, match["target"])
                match = MSEARCH.match(path)
                if match:
                    return await self.msearch(request, match["target"])
            return await self.upstream.forward(request)
        except (GatewayError, UpstreamError) as exc:
            return error_response(exc, params)
        except Exception as exc:
            error = as_gateway_error(exc)
            if error is None:
                log.exception("failed %s %s", request.method, request.rel_url.path)
                error = GatewayError(
                    500,
                    f"The dotbridge gateway failed on this request ({type(exc).__name__}): "
                    "see its log.",
                    "dotbridge_gateway_exception",
                )
            return error_response(error, params)

    # ---- _search ---------------------------------------------------------------------------------

    async def search(self, request: web.Request, raw_target: str | None) -> web.StreamResponse:
        raw = await request.read()
        plain = decoded(raw, request.headers.get("Content-Encoding"))
        target = unquote(raw_target) if raw_target else None
        alias = split_alias(target)
        if plain is None or (alias is None and not has_markers(plain)):
            return await self.upstream.forward(request, raw)
        body = parse_object(plain)
        if body is None:
            return await self.upstream.forward(request, raw)  # the cluster says what is wrong
        featured = has_features(body)
        if not featured and alias is None:
            return await self.upstream.forward(request, raw)
        if raw_target is None or target is None:
            raise BadRequest(
                "A search with neural, rerank or hybrid needs its index in the path: "
                "POST /INDEX/_search."
            )
        result = await self.run(target, raw_target, body, request.query, request.headers)
        if result is None:
            return await self.upstream.forward(request, raw)
        if isinstance(result, Forward):
            path_qs = request.rel_url.with_query(result.query(request.query)).raw_path_qs
            data = json.dumps(result.body).encode()
            return await self.upstream.forward(request, data, raw_path_qs=path_qs, rewritten=True)
        return json_response(result, params=request.query, headers=self.answer_headers)

    @property
    def answer_headers(self) -> dict[str, str]:
        return self.upstream.backend.answer_headers

    async def run(
        self,
        target: str,
        raw_target: str,
        body: dict,
        params: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Forward | dict | None:
        """One search on one target: its features run, its per-mode name honoured."""
        alias = split_alias(target)
        featured = has_features(body)
        caller = caller_headers(headers)
        info = await self.resolver.resolve(target, raw_target, caller)
        if isinstance(info, NotDotbridge):
            if not featured:
                return None  # a name that only looks like a per-mode one
            raise BadRequest(info.reason)
        mode = alias[1] if alias is not None and not featured else None
        call = Call(self.upstream, caller, raw_target, params)
        return await executor.run(call, info, body, mode)

    # ---- _msearch --------------------------------------------------------------------------------

    async def msearch(self, request: web.Request, raw_target: str | None) -> web.StreamResponse:
        raw = await request.read()
        plain = decoded(raw, request.headers.get("Content-Encoding"))
        target = unquote(raw_target) if raw_target else None
        items = parse_ndjson(plain) if plain is not None else None
        if items is None or not any(is_special(h, line, target) for h, _, line in items):
            return await self.upstream.forward(request, raw)

        async def run_item(name, raw_name, body, params):
            return await self.run(name, raw_name, body, params, request.headers)

        answer = await run_msearch(
            self.upstream,
            caller_headers(request.headers),
            request.rel_url.raw_path,
            target,
            request.query,
            items,
            run_item,
        )
        return json_response(answer, params=request.query, headers=self.answer_headers)

    # ---- the gateway's own API ------------------------------------------------------------------

    async def own(self, request: web.Request, path: str) -> web.StreamResponse:
        if path.rstrip("/") == "/_dotbridge" and request.method in ("GET", "HEAD"):
            return json_response(self.describe(), params=request.query)
        match = EMBED.match(path)
        if match and request.method == "POST":
            model = self.models.by_name(unquote(match["name"]))
            body = parse_object(await request.read())
            return json_response(await mlapi.embed(model, body))
        match = RERANK.match(path)
        if match and request.method == "POST":
            raw_index = match["index"]
            ranked = await mlapi.rerank(
                self.upstream,
                self.resolver,
                unquote(raw_index),
                raw_index,
                caller_headers(request.headers),
                parse_object(await request.read()),
            )
            return json_response(ranked)
        raise GatewayError(
            404,
            f"The dotbridge gateway has no {request.method} {path}: it serves GET /_dotbridge, "
            "POST /_dotbridge/models/NAME/_embed and POST /_dotbridge/rerank/INDEX.",
            "dotbridge_gateway_exception",
        )

    def describe(self) -> dict:
        return {
            "name": "dotbridge gateway",
            "cluster": self.upstream.base,
            "models": [model.describe() for model in self.models.served],
        }


def has_features(body: dict) -> bool:
    """Whether a search body uses neural, ext.rerank or a hybrid query (BadRequest when one of
    them is malformed)."""
    return bool(
        neural_texts(body) or rerank_text(body) is not None or hybrid_query(body.get("query"))
    )


def parse_object(raw: bytes) -> dict | None:
    """A JSON object body ({} when empty); None when it is not one."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def decoded(raw: bytes, encoding: str | None) -> bytes | None:
    """The body without its Content-Encoding (opensearch-py gzips request bodies); None when
    the gateway cannot read it (the request then passes through as it is)."""
    if not encoding or encoding.lower() == "identity":
        return raw
    try:
        if encoding.lower() in ("gzip", "x-gzip"):
            return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        if encoding.lower() == "deflate":
            return zlib.decompress(raw)
    except zlib.error:
        return None
    return None


def create_app(upstream: Upstream, models: Models, resolver: IndexResolver) -> web.Application:
    """The aiohttp application: one catch-all route; the cluster client opens and closes with it."""
    gateway = Gateway(upstream, models, resolver)
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)

    async def on_startup(_: web.Application) -> None:
        await upstream.start()

    async def on_cleanup(_: web.Application) -> None:
        await upstream.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app["gateway"] = gateway
    return app
