"""Which node of the cluster a gateway request goes to, and when a failed one is tried again.

Requests go round the live nodes in turn. A node that refused or dropped a connection is left
out for DEAD_TIMEOUT seconds (doubling, up to MAX_DEAD, while it stays dead), then gets one
request again; when every node is out, the one out longest is tried anyway.

What is retried on the next node:
- a connection that could not be made (refused, connect timeout): nothing was sent, so any
  request, a write included, goes to the next node;
- a failure after the request went out (the node died mid-request, a read timeout): only reads
  (`replayable`), once; a write may already be applied (a `_bulk` partly, with ids the cluster
  chose): replaying it could write twice, so its caller gets a 502 and decides (dotbridge's
  ingest retries with its own ids, which cannot duplicate).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from bridge.hosts import parse_hosts, safe_host

T = TypeVar("T")

DEAD_TIMEOUT = 5.0
MAX_DEAD = 60.0
# Reads sent as POST: a repeat returns the same answer and changes nothing.
READ_ENDPOINTS = (
    "_search",
    "_msearch",
    "_count",
    "_mget",
    "_field_caps",
    "_validate",
    "_explain",
    "_rank_eval",
    "_knn_search",
)


def replayable(method: str, path: str) -> bool:
    """Whether a request may be sent again after it reached a node that then failed."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    if method != "POST":
        return False
    # The endpoint is the first segment with a leading `_` (index names have none; ids after it
    # may: `/idx/_update/_search` is a write).
    endpoint = next((s for s in path.split("?", 1)[0].split("/") if s.startswith("_")), "")
    return endpoint in READ_ENDPOINTS or endpoint.startswith("_search")


def not_sent(exc: BaseException) -> bool:
    """A failure before anything of the request left: no connection could be made."""
    return isinstance(exc, aiohttp.ClientConnectorError) or type(exc).__name__ == (
        "ConnectionTimeoutError"
    )


class HostRing:
    """The cluster's nodes (their URLs, credentials left out), in turn, the dead left out."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = [safe_host(h).rstrip("/") for h in parse_hosts(url)]
        self._clock = clock
        self._next = 0
        self._dead: dict[str, tuple[float, int]] = {}  # url -> (until, times in a row)

    @property
    def label(self) -> str:
        """For messages: the node, or all of them."""
        return ",".join(self.urls)

    def order(self) -> list[str]:
        """The nodes to try, in this order: live ones from the next in turn, then the dead ones
        whose time out is over, then (all out) the one whose time out ends first."""
        now = self._clock()
        start = self._next % len(self.urls)
        self._next += 1
        turn = self.urls[start:] + self.urls[:start]
        live = [u for u in turn if self._dead.get(u, (0.0, 0))[0] <= now]
        if live:
            return live
        return sorted(turn, key=lambda u: self._dead[u][0])[:1]

    def failed(self, url: str) -> None:
        _, times = self._dead.get(url, (0.0, 0))
        wait = min(DEAD_TIMEOUT * 2**times, MAX_DEAD)
        self._dead[url] = (self._clock() + wait, times + 1)

    def answered(self, url: str) -> None:
        self._dead.pop(url, None)

    async def send(
        self,
        attempt: Callable[[str], Awaitable[T]],
        *,
        method: str,
        path: str,
        body_again: bool = True,
    ) -> T:
        """`attempt(node_url)` on the nodes in turn, as the rules above allow; the last failure
        when none answers. `body_again`: whether the body can be sent a second time (a streamed
        one cannot). `attempt` must raise only before the node's answer began to be relayed."""
        replays = 1 if body_again and replayable(method, path) else 0
        failure: BaseException | None = None
        for url in self.order():
            try:
                result = await attempt(url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = exc
                self.failed(url)
                if not_sent(exc):
                    continue
                if replays > 0:
                    replays -= 1
                    continue
                raise
            self.answered(url)
            return result
        assert failure is not None
        raise failure
