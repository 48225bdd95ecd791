"""Who a caller is, as the cluster sees it through the gateway, and who may use its own API.

A caller's headers that claim an identity or an address (`X-Forwarded-*`, `X-Real-IP`,
`Forwarded`, the security plugin's proxy-auth `x-proxy-user` / `x-proxy-roles`, and any named
with `--strip-header`) are dropped unless the caller's address is one of `--trusted-proxies` (a
load balancer in front); the gateway then says itself where the request came from
(`X-Forwarded-For`, `X-Forwarded-Proto`). Headers named in `Connection:` belong to that
connection and go no further.

The model API and the full `GET /_dotbridge` are for callers the cluster authenticates (their
own headers checked against it, cached briefly per caller) or who hold the token given to
`serve` (`DOTBRIDGE_SERVE_TOKEN`, sent as `X-Dotbridge-Token`).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from bridge.gateway.errors import GatewayError, UpstreamError
from bridge.gateway.upstream import Upstream, identity_key

IDENTITY_HEADERS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-proxy-user",
        "x-proxy-roles",
    }
)
TOKEN_HEADER = "X-Dotbridge-Token"
AUTH_PATHS = ("/_plugins/_security/authinfo", "/_security/_authenticate", "/")


def networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`--trusted-proxies` as networks; ValueError naming a value that is none."""
    out = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"--trusted-proxies {part!r} is not an address or network (e.g. 10.0.0.0/8)"
                ) from None
    return out


def connection_named(headers: Mapping[str, str]) -> set[str]:
    """The header names a `Connection:` header lists (they end with this connection)."""
    names: set[str] = set()
    for value in headers.getall("Connection", []) if hasattr(headers, "getall") else []:
        names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names - {"close", "keep-alive"}


class Identity:
    """Cleans a caller's headers before anything is sent for it."""

    def __init__(self, trusted: Iterable[str] = (), strip: Iterable[str] = ()) -> None:
        self.trusted = networks(trusted)
        self.stripped = IDENTITY_HEADERS | {h.strip().lower() for h in strip if h.strip()}

    def trusts(self, peer: str | None) -> bool:
        if not peer or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    def clean(self, request: web.BaseRequest) -> CIMultiDict[str]:
        headers = request.headers
        trusted = self.trusts(request.remote)
        named = connection_named(headers)
        out: CIMultiDict[str] = CIMultiDict()
        for key, value in headers.items():
            low = key.lower()
            if low in named:
                continue
            if not trusted and (low in self.stripped or low.startswith("x-forwarded-")):
                continue
            out.add(key, value)
        peer = request.remote
        if peer:
            prior = ", ".join(headers.getall("X-Forwarded-For", [])) if trusted else ""
            out.popall("X-Forwarded-For", None)
            out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
            if "X-Forwarded-Proto" not in out:
                out["X-Forwarded-Proto"] = request.scheme
        return out


class Authenticator:
    """Whether a caller may use the gateway's own API: the cluster's word, cached per caller."""

    def __init__(self, upstream: Upstream, *, ttl: float = 5.0, token: str | None = None) -> None:
        self.upstream = upstream
        self.ttl = max(ttl, 1.0)
        self.token = token or None
        self._secured: tuple[float, bool] | None = None
        self._known: dict[tuple, float] = {}

    def has_token(self, caller: Mapping[str, str]) -> bool:
        sent = caller.get(TOKEN_HEADER) or caller.get(TOKEN_HEADER.lower())
        return bool(self.token and sent and hmac.compare_digest(sent.encode(), self.token.encode()))

    async def secured(self) -> bool:
        """Whether the cluster refuses an anonymous caller (checked once a minute)."""
        now = time.monotonic()
        if self._secured is None or self._secured[0] < now:
            try:
                await self.upstream.call("GET", "/", {})
                secured = False
            except UpstreamError as exc:
                secured = exc.status in (401, 403)
            self._secured = (now + 60.0, secured)
        return self._secured[1]

    async def check(self, caller: Mapping[str, str]) -> bool:
        """True: the caller is known (token, or authenticated by a secured cluster); False: an
        open cluster without a token, where anyone may use the API but sees no details. Raises
        the cluster's own 401 (or the gateway's, for a missing token)."""
        if self.has_token(caller):
            return True
        if not await self.secured():
            if self.token:
                raise GatewayError(
                    401,
                    f"This gateway's own API needs its token: send it as {TOKEN_HEADER}.",
                    "security_exception",
                    {"WWW-Authenticate": 'Bearer realm="dotbridge"'},
                )
            return False
        key = identity_key({k: v for k, v in caller.items() if k.lower() != "x-forwarded-proto"})
        now = time.monotonic()
        if self._known.get(key, 0.0) > now:
            return True
        await self.authenticate(caller)
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = now + self.ttl
        return True

    async def authenticate(self, caller: Mapping[str, str]) -> None:
        """The cluster's own answer to who the caller is; its 401 raised as it was."""
        last: UpstreamError | None = None
        for path in AUTH_PATHS:
            try:
                await self.upstream.call("GET", path, caller)
                return
            except UpstreamError as exc:
                if exc.status in (400, 404, 405):  # no such endpoint on this engine
                    last = exc
                    continue
                raise
        assert last is not None
        raise last
