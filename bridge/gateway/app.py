"""The gateway's web application: what is rewritten, what passes through, and its own endpoints.

Searches (`_search`, `_msearch`) with a dotbridge feature or on a per-mode name are run by the
executor; `/_dotbridge/...` is the gateway's own API (never an index: index names cannot start
with `_`); every other request passes through to the cluster unchanged. This module is the one
boundary where failures become answers: OpenSearch's error JSON, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import web

from bridge.gateway import executor, jsoncodec, limits, mlapi
from bridge.gateway.discover import split_alias
from bridge.gateway.errors import (
    BadRequest,
    GatewayError,
    Overloaded,
    TooLarge,
    UpstreamError,
    as_gateway_error,
)
from bridge.gateway.executor import Call, Forward
from bridge.gateway.identity import Authenticator, Identity
from bridge.gateway.limits import Limits
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


class Gateway:
    """The request handler: one per application, holding the cluster client and the models."""

    def __init__(
        self,
        upstream: Upstream,
        models: Models,
        resolver: IndexResolver,
        *,
        limits: Limits | None = None,
        identity: Identity | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.upstream = upstream
        self.models = models
        self.resolver = resolver
        self.limits = limits or Limits()
        self.identity = identity or Identity()
        self.auth = auth or Authenticator(upstream, ttl=resolver.ttl)
        self.staged = 0  # searches with dotbridge features running now

    async def handle(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        try:
            # Identity and connection headers the caller may not set are gone before anything.
            request = request.clone(headers=self.identity.clean(request))
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
        except web.HTTPRequestEntityTooLarge:
            return error_response(self.too_large(), params)
        except (ConnectionError, asyncio.IncompleteReadError):
            return web.Response(status=400)  # the caller left: nobody reads this
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

    def too_large(self) -> TooLarge:
        return TooLarge(
            f"The request body is larger than {self.limits.max_body:,} bytes: send a "
            "smaller one (the gateway's --max-body limit)."
        )

    async def body(self, request: web.Request) -> tuple[bytes, bytes | None]:
        """The caller's body as sent, and without its Content-Encoding (None: unreadable),
        within the size limits and the read timeout."""
        try:
            raw = await asyncio.wait_for(request.read(), self.limits.read_timeout)
        except TimeoutError:
            raise GatewayError(
                408,
                f"The request body did not arrive within {self.limits.read_timeout:g} s.",
                "dotbridge_gateway_exception",
            ) from None
        return raw, await limits.inflate(raw, request.headers.get("Content-Encoding"), self.limits)

    def parse(self, raw: bytes) -> dict | None:
        """A JSON object body ({} when empty), depth-checked; None when it is not one."""
        if not raw.strip():
            return {}
        try:
            value = limits.loads(raw, self.limits)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def search(self, request: web.Request, raw_target: str | None) -> web.StreamResponse:
        raw, plain = await self.body(request)
        target = unquote(raw_target) if raw_target else None
        alias = split_alias(target)
        if plain is None or (alias is None and not has_markers(plain)):
            return await self.upstream.forward(request, raw)
        body = self.parse(plain)
        if body is None:
            return await self.upstream.forward(request, raw)  # the cluster says what is wrong
        limits.check_neural(limits.count_neural(body), self.limits)
        if raw_target is None or target is None:
            if not has_features(body):
                return await self.upstream.forward(request, raw)
            raise BadRequest(
                "A search with neural, rerank or hybrid needs its index in the path: "
                "POST /INDEX/_search."
            )
        result = await self.run(target, raw_target, body, request.query, request.headers)
        if result is None:
            return await self.upstream.forward(request, raw)
        if isinstance(result, Forward):
            path_qs = request.rel_url.with_query(result.query(request.query)).raw_path_qs
            data = jsoncodec.dumps(result.body)
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
        """One search on one target: its features run, its per-mode name honoured; None: the
        gateway owns nothing here and the search goes to the cluster unchanged (an index not
        made by dotbridge keeps the cluster's own neural-search)."""
        alias = split_alias(target)
        caller = caller_headers(headers)
        info = await self.resolver.resolve(target, raw_target, caller)
        if isinstance(info, NotDotbridge):
            return None
        featured = has_features(body)
        if not featured and alias is None:
            return None
        mode = alias[1] if alias is not None and not featured else None
        if self.staged >= self.limits.max_staged:
            raise Overloaded(
                f"The gateway is running {self.staged} searches with the model: retry in a "
                "moment (its --max-staged limit)."
            )
        self.staged += 1
        try:
            call = Call(self.upstream, caller, raw_target, params)
            return await executor.run(call, info, body, mode)
        finally:
            self.staged -= 1

    # ---- _msearch --------------------------------------------------------------------------------

    async def msearch(self, request: web.Request, raw_target: str | None) -> web.StreamResponse:
        raw, plain = await self.body(request)
        target = unquote(raw_target) if raw_target else None
        if plain is None:
            return await self.upstream.forward(request, raw)
        try:
            items = parse_ndjson(plain)
        except RecursionError:
            raise limits.too_deep(self.limits) from None
        if items is None or not any(is_special(h, line, target) for h, _, line in items):
            return await self.upstream.forward(request, raw)
        for header, body, _ in items:
            limits.check_depth(header, self.limits)
            limits.check_depth(body, self.limits)
        limits.check_neural(sum(limits.count_neural(b) for _, b, _ in items), self.limits)

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
        caller = caller_headers(request.headers)
        if path.rstrip("/") == "/_dotbridge" and request.method in ("GET", "HEAD"):
            known = await self.auth.check(caller)
            return json_response(self.describe(known), params=request.query)
        match = EMBED.match(path)
        if match and request.method == "POST":
            await self.auth.check(caller)
            model = self.models.by_name(unquote(match["name"]))
            raw, plain = await self.body(request)
            body = self.parse(plain if plain is not None else raw)
            return json_response(await mlapi.embed(model, body, self.limits))
        match = RERANK.match(path)
        if match and request.method == "POST":
            raw_index = match["index"]
            raw, plain = await self.body(request)
            ranked = await mlapi.rerank(
                self.upstream,
                self.resolver,
                unquote(raw_index),
                raw_index,
                caller,
                self.parse(plain if plain is not None else raw),
            )
            return json_response(ranked)
        raise GatewayError(
            404,
            f"The dotbridge gateway has no {request.method} {path}: it serves GET /_dotbridge, "
            "POST /_dotbridge/models/NAME/_embed and POST /_dotbridge/rerank/INDEX.",
            "dotbridge_gateway_exception",
        )

    def describe(self, known: bool) -> dict:
        """The gateway and its models; the cluster's address, model paths and devices only for
        a caller the cluster (or the gateway's token) vouches for."""
        if not known:
            return {
                "name": "dotbridge gateway",
                "models": [model.public() for model in self.models.served],
            }
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


def create_app(
    upstream: Upstream,
    models: Models,
    resolver: IndexResolver,
    *,
    limits: Limits | None = None,
    identity: Identity | None = None,
    auth: Authenticator | None = None,
) -> web.Application:
    """The aiohttp application: one catch-all route; the cluster client opens and closes with it."""
    limits = limits or Limits()
    gateway = Gateway(upstream, models, resolver, limits=limits, identity=identity, auth=auth)
    app = web.Application(client_max_size=limits.max_body)

    async def expect(request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue` answered 413 at once for a body past --max-body (else 100)."""
        if (request.content_length or 0) > limits.max_body:
            return error_response(gateway.too_large(), request.query)
        if request.headers.get("Expect", "").lower() != "100-continue":
            return error_response(
                GatewayError(417, "Only Expect: 100-continue is understood.", "expectation_failed")
            )
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    app.router.add_route("*", "/{tail:.*}", gateway.handle, expect_handler=expect)

    async def on_startup(_: web.Application) -> None:
        await upstream.start()

    async def on_cleanup(_: web.Application) -> None:
        await upstream.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app["gateway"] = gateway
    return app
