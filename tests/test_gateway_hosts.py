"""The gateway's choice of node (bridge.gateway.hosts): turns, dead nodes, what is retried."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bridge.gateway import hosts
from bridge.gateway.hosts import HostRing, replayable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("method", "path", "again"),
    [
        ("GET", "/idx/_search", True),
        ("HEAD", "/idx", True),
        ("POST", "/idx/_search?size=3", True),
        ("POST", "/_msearch", True),
        ("POST", "/idx/_count", True),
        ("POST", "/_mget", True),
        ("POST", "/_search/scroll", True),
        ("POST", "/idx/_bulk", False),
        ("POST", "/_bulk", False),
        ("PUT", "/idx/_doc/1", False),
        ("POST", "/idx/_doc", False),
        ("DELETE", "/idx", False),
        ("POST", "/idx/_update/_search", False),  # an update of the document with id _search
        ("POST", "/idx/_search/template", True),
    ],
)
def test_what_is_replayed(method, path, again):
    assert replayable(method, path) is again


def test_turns_skip_a_dead_node_until_its_time_is_out():
    clock = Clock()
    ring = HostRing("http://a:1,http://b:2,http://c:3", clock=clock)
    assert [ring.order()[0] for _ in range(3)] == ["http://a:1", "http://b:2", "http://c:3"]
    ring.failed("http://a:1")
    firsts = [ring.order()[0] for _ in range(6)]
    assert "http://a:1" not in firsts and set(firsts) == {"http://b:2", "http://c:3"}
    clock.now += hosts.DEAD_TIMEOUT
    assert "http://a:1" in {ring.order()[0] for _ in range(3)}
    ring.failed("http://a:1")  # still dead: twice as long
    clock.now += hosts.DEAD_TIMEOUT
    assert "http://a:1" not in {ring.order()[0] for _ in range(3)}
    ring.answered("http://a:1")
    assert "http://a:1" in {ring.order()[0] for _ in range(3)}


def test_with_every_node_dead_the_first_back_is_tried():
    clock = Clock()
    ring = HostRing("http://a:1,http://b:2", clock=clock)
    ring.failed("http://b:2")
    clock.now += 1
    ring.failed("http://a:1")
    assert ring.order() == ["http://b:2"]


def test_credentials_never_reach_the_node_list():
    ring = HostRing("https://u:pw@a:9200/p,https://u:pw@[::1]:9200")
    assert ring.urls == ["https://a:9200/p", "https://[::1]:9200"]


def _refused() -> aiohttp.ClientConnectorError:
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("a", 1, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


def _send(ring, failures, method, path):
    tried = []

    async def attempt(url):
        tried.append(url)
        if failures:
            raise failures.pop(0)
        return url

    async def run():
        return await ring.send(attempt, method=method, path=path)

    try:
        return asyncio.run(run()), tried
    except aiohttp.ClientError as exc:
        return exc, tried


def test_a_refused_connection_moves_any_request_on():
    ring = HostRing("http://a:1,http://b:2,http://c:3")
    answered, tried = _send(ring, [_refused(), _refused()], "POST", "/_bulk")
    assert answered == "http://c:3" and len(tried) == 3


def test_a_read_is_sent_once_more_after_a_node_died_under_it():
    ring = HostRing("http://a:1,http://b:2,http://c:3")
    died = aiohttp.ServerDisconnectedError()
    answered, tried = _send(ring, [died], "POST", "/idx/_search")
    assert answered == tried[1] and len(tried) == 2
    twice = [aiohttp.ServerDisconnectedError(), aiohttp.ServerDisconnectedError()]
    failed, tried = _send(ring, twice, "GET", "/idx/_search")
    assert isinstance(failed, aiohttp.ServerDisconnectedError) and len(tried) == 2


def test_a_write_is_never_sent_twice():
    ring = HostRing("http://a:1,http://b:2")
    failed, tried = _send(ring, [aiohttp.ServerDisconnectedError()], "POST", "/_bulk")
    assert isinstance(failed, aiohttp.ServerDisconnectedError) and len(tried) == 1


@pytest.mark.integration
def test_a_gateway_with_a_dead_first_node_answers_every_request(
    opensearch_settings, tiny_model_dir, tmp_path
):
    """`dotbridge serve --url <closed port>,<node>`: no request fails, none waits."""
    import dataclasses
    import time

    from tests.gateway_fixtures import request, running_gateway
    from tests.test_hosts import DEAD_PORT

    listed = dataclasses.replace(
        opensearch_settings, url=f"http://127.0.0.1:{DEAD_PORT},{opensearch_settings.url}"
    )
    with running_gateway(listed, tiny_model_dir, tmp_path / "serve.log") as base:
        took = []
        for _ in range(20):
            start = time.perf_counter()
            for method, path in (("GET", "/_cat/health"), ("POST", "/_search?size=0")):
                body = {"query": {"match_all": {}}} if method == "POST" else None
                assert request(base, method, path, body).status == 200, (method, path)
            took.append(time.perf_counter() - start)
    took.sort()
    assert took[len(took) // 2] < 0.5, took
