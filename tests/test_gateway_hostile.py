"""A real `dotbridge serve` process in front of a real node, attacked over raw HTTP.

Every case of the matrix is sent as bytes on a socket (or as a plain request when it needs no
malformed framing), gets its expected status, and leaves the gateway answering a normal search
within a second. Bombs are checked against the gateway's memory; slow and failing peers
against its cluster connections. Nothing is mocked: the cluster is the session's node (and a
node of this module's own, killed in the middle of an answer).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bridge.client import connect
from bridge.config import ConnectionSettings
from tests.gateway_fixtures import answer, dotbridge_index, request, start_gateway, stop, wait_ready
from tests.node_fixtures import free_port

BIG_DOCS = 20  # 20 documents of 1 MB: a 20 MB answer
BIG_TEXT = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000]
READ_TIMEOUT = 3  # the test gateway's --read-timeout, seconds


def port_from(variable: str) -> int:
    return int(os.environ.get(variable) or 0) or free_port()


@pytest.fixture(scope="module")
def gateway(opensearch_settings, tiny_model_dir, tmp_path_factory) -> Iterator[dict]:
    """The gateway under attack: its URL, port, process and log."""
    log = tmp_path_factory.mktemp("hostile") / "serve.log"
    port = port_from("DOTBRIDGE_HOSTILE_PORT")
    proc, url = start_gateway(
        opensearch_settings,
        tiny_model_dir,
        log,
        "--max-body",
        str(12 << 20),
        "--read-timeout",
        str(READ_TIMEOUT),
        "--max-queue",
        "64",
        port=port,
    )
    try:
        wait_ready(proc, url, log)
        yield {"url": url, "port": port, "proc": proc, "log": log}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def small_index(opensearch_settings, tiny_encoder) -> Iterator[str]:
    yield from dotbridge_index(connect(opensearch_settings), tiny_encoder, 20)


@pytest.fixture(scope="module")
def big_index(opensearch_settings) -> Iterator[str]:
    """A plain index whose match_all answer is about 20 MB."""
    client = connect(opensearch_settings)
    name = f"test-hostile-big-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=name, body={"settings": {"number_of_shards": 1}})
    try:
        for i in range(BIG_DOCS):
            client.index(index=name, id=str(i), body={"text": BIG_TEXT})
        client.indices.refresh(index=name)
        yield name
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


# ---- raw HTTP ------------------------------------------------------------------------------------


def raw(port: int, data: bytes, *, timeout: float = 15.0, linger: float = 0.0) -> bytes:
    """Bytes sent on a fresh connection; what came back until it closed or went quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if linger:
            time.sleep(linger)
        chunks = []
        try:
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks)[:65536] and len(chunks) > 0:
                    sock.settimeout(1.0)  # the head is in: take what follows briefly
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    """The status of the first response in raw bytes (0: none, the connection was dropped)."""
    if not reply.startswith(b"HTTP/"):
        return 0
    return int(reply.split(b" ", 2)[1])


def http(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_post(path: str, body: bytes, **extra: str) -> bytes:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return http("POST", path, {**headers, "Connection": "close"}, body)


def rss(proc) -> int:
    return psutil.Process(proc.pid).memory_info().rss


def healthy(url: str, index: str) -> float:
    """Seconds a normal search took through the gateway (it must answer, and right)."""
    began = time.perf_counter()
    resp = request(url, "POST", f"/{index}/_search", {"query": {"match": {"text": "cell"}}})
    took = time.perf_counter() - began
    assert resp.status == 200, resp.data[:300]
    assert answer(resp)["hits"]["hits"], "the normal search found nothing"
    return took


def neural(text: str) -> dict:
    return {"neural": {"vector": {"query_text": text, "k": 5}}}


# ---- the matrix -------------------------------------------------------------------------------

BOMB = 10 << 20  # bytes on the wire


def gzip_bomb() -> bytes:
    """About 10 MB of gzip that inflates about 1,000:1."""
    out = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts, size = [], 0
    while size < BOMB:
        part = out.compress(zeros)
        parts.append(part)
        size += len(part)
    parts.append(out.flush())
    return b"".join(parts)


def deflate_bomb() -> bytes:
    out = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts, size = [], 0
    while size < BOMB:
        part = out.compress(zeros)
        parts.append(part)
        size += len(part)
    parts.append(out.flush())
    return b"".join(parts)


def deep(n: int) -> bytes:
    return (
        b'{"query": ' + json.dumps(neural("x")).encode() + b', "x": ' + b"[" * n + b"]" * n + b"}"
    )


def cases(index: str) -> list[tuple[str, bytes, set[int]]]:
    """(name, raw request, the statuses it may get): at least 25."""
    search = f"/{index}/_search"
    plain = json.dumps({"query": {"match": {"text": "cell"}}}).encode()
    many_neural = json.dumps(
        {"query": {"bool": {"should": [neural(f"q{i}") for i in range(10_000)]}}}
    ).encode()
    ndjson_deep = b'{"index": "' + index.encode() + b'"}\n' + deep(5_000) + b"\n"
    msearch_neural = b"".join(
        b'{}\n{"query": {"bool": {"should": ['
        + b", ".join(json.dumps(neural(f"q{i}-{j}")).encode() for j in range(100))
        + b"]}}}\n"
        for i in range(100)
    )
    big_text = json.dumps({"input": ["a " * (5 << 20)]}).encode()
    many_texts = json.dumps({"input": ["word"] * 10_000}).encode()
    return [
        ("5,000-deep JSON with neural", json_post(search, deep(5_000)), {400}),
        ("5,000-deep JSON without features", json_post(search, b"[" * 5000 + b"]" * 5000), {400}),
        ("5,000-deep _msearch item", json_post(f"/{index}/_msearch", ndjson_deep), {400}),
        ("10,000 neural clauses", json_post(search, many_neural), {400}),
        ("a 10 MB text to _embed", json_post("/_dotbridge/models/MODEL/_embed", big_text), {413}),
        ("10,000 texts to _embed", json_post("/_dotbridge/models/MODEL/_embed", many_texts), {413}),
        ("a 13 MB body", json_post(search, b" " * (13 << 20)), {413}),
        (
            "Content-Length and Transfer-Encoding",
            http(
                "POST",
                search,
                {"Content-Length": "4", "Transfer-Encoding": "chunked", "Content-Type": "a/json"},
                b"0\r\n\r\n",
            ),
            {400},
        ),
        (
            "two Content-Lengths",
            http("POST", search, {"Content-Length": "2", "content-length": "30"}, b"{}"),
            {400},
        ),
        (
            "Transfer-Encoding: xchunked",
            http("POST", search, {"Transfer-Encoding": "xchunked"}, b"2\r\n{}\r\n0\r\n\r\n"),
            {400, 501},
        ),
        (
            "Transfer-Encoding: chunked, identity",
            http("POST", search, {"Transfer-Encoding": "chunked, identity"}, b"0\r\n\r\n"),
            {400, 501},
        ),
        (
            "a chunk size that is not hex",
            http("POST", search, {"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n"),
            {400},
        ),
        (
            "a smuggled second request",
            http("POST", search, {"Content-Length": "0", "Transfer-Encoding": "chunked"})
            + b"0\r\n\r\nGET /_cat/indices HTTP/1.1\r\nHost: x\r\n\r\n",
            {400},
        ),
        ("Content-Length: -1", http("POST", search, {"Content-Length": "-1"}, b"{}"), {400}),
        ("a 20 kB header", http("GET", "/", {"X-Big": "a" * 20_000}), {400, 431}),
        ("200 headers", http("GET", "/", {f"X-H{i}": "v" for i in range(200)}), {400, 431}),
        ("a NUL in the path", b"GET /\x00/_search HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
        ("garbage instead of HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 8, {0, 400}),
        ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", {200}),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {0, 400, 505}),
        (
            "Expect: 100-continue",
            http(
                "POST",
                search,
                {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(plain)),
                    "Expect": "100-continue",
                    "Connection": "close",
                },
                plain,
            ),
            {100},
        ),
        (
            "a truncated gzip search",
            json_post(search, gzip.compress(plain)[:-12], Content_Encoding="gzip"),
            {400, 500},  # the cluster's own answer to what it cannot read (checked below)
        ),
        (
            "an unknown Content-Encoding",
            json_post(search, plain, Content_Encoding="br"),
            {200, 400, 415, 500},  # the cluster's own answer
        ),
        (
            "Expect: 100-continue for 20 MB",
            http("POST", search, {"Content-Length": str(20 << 20), "Expect": "100-continue"}),
            {413},
        ),
        (
            "10,000 neural clauses over _msearch items",
            json_post(f"/{index}/_msearch", msearch_neural),
            {400},
        ),
        (
            "a neural search with a body that is not JSON",
            json_post(search, b'{"query": {"neural": '),
            {400},
        ),
    ]


def test_the_hostile_matrix(gateway, small_index):
    """Each case gets its status and the gateway answers a normal search within 1 s after it."""
    url, port = gateway["url"], gateway["port"]
    (model,) = answer(request(url, "GET", "/_dotbridge"))["models"]
    matrix = cases(small_index)
    assert len(matrix) >= 25
    healthy(url, small_index)  # warm
    failures = []
    for name, data, expected in matrix:
        data = data.replace(b"/MODEL/", f"/{model['name']}/".encode())
        status = status_of(raw(port, data))
        if status not in expected:
            failures.append(f"{name}: {status}, expected one of {sorted(expected)}")
        took = healthy(url, small_index)
        if took > 1.0:
            failures.append(f"after {name}: a normal search took {took:.2f} s")
    assert not failures, failures
    assert "Traceback" not in gateway["log"].read_text()


@pytest.mark.parametrize("bomb", [gzip_bomb, deflate_bomb], ids=["gzip", "deflate"])
def test_compression_bombs_are_refused_within_bounded_memory(gateway, small_index, bomb):
    data = bomb()
    assert len(data) >= BOMB
    encoding = "gzip" if bomb is gzip_bomb else "deflate"
    before = rss(gateway["proc"])
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss(gateway["proc"]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        reply = raw(
            gateway["port"],
            json_post(f"/{small_index}/_search", data, Content_Encoding=encoding),
        )
    finally:
        done.set()
        watcher.join()
    assert status_of(reply) == 413, reply[:300]
    assert b"--max-inflated" in reply
    assert peak[0] - before < 100 << 20, f"RSS grew by {(peak[0] - before) >> 20} MB"
    assert healthy(gateway["url"], small_index) < 1.0


def test_a_chunked_body_without_end_times_out(gateway, small_index):
    began = time.monotonic()
    reply = raw(
        gateway["port"],
        http("POST", f"/{small_index}/_search", {"Transfer-Encoding": "chunked"}, b"2\r\n{}\r\n"),
        timeout=READ_TIMEOUT + 10,
    )
    assert status_of(reply) == 408, reply[:300]
    assert time.monotonic() - began < READ_TIMEOUT + 5
    assert healthy(gateway["url"], small_index) < 1.0


def test_headers_named_in_connection_do_not_reach_the_cluster(gateway, small_index):
    """OpenSearch echoes X-Opaque-Id: named in Connection, it must not get there."""
    sent = {"X-Opaque-Id": "secret-123", "Content-Type": "application/json"}
    seen = request(gateway["url"], "POST", f"/{small_index}/_search", {}, headers=sent)
    assert seen.headers.get("X-Opaque-Id") == "secret-123"  # the control: it is echoed
    hidden = {**sent, "Connection": "keep-alive, X-Opaque-Id"}
    resp = request(gateway["url"], "POST", f"/{small_index}/_search", {}, headers=hidden)
    assert resp.status == 200 and "X-Opaque-Id" not in resp.headers


def test_proxy_and_forwarding_headers_pass_no_rights(gateway, small_index):
    spoofed = {
        "X-Forwarded-For": "10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "Forwarded": "for=10.0.0.1",
        "x-proxy-user": "admin",
        "x-proxy-roles": "all_access",
    }
    resp = request(gateway["url"], "GET", f"/{small_index}/_search", headers=spoofed)
    assert resp.status == 200
    assert healthy(gateway["url"], small_index) < 1.0


def test_path_tricks_get_the_clusters_own_answer(gateway, opensearch_settings, small_index):
    for path in ("/..%2f_cluster/settings", "/%2e%2e/_nodes", f"/{small_index}/..%2f..%2f"):
        through = status_of(raw(gateway["port"], http("GET", path, {"Connection": "close"})))
        host, port = opensearch_settings.url.split("//")[1].split(":")
        direct = socket.create_connection((host, int(port.rstrip("/"))), timeout=10)
        direct.sendall(http("GET", path, {"Connection": "close"}))
        reply = direct.recv(1 << 16)
        direct.close()
        assert through == status_of(reply), path
    assert healthy(gateway["url"], small_index) < 1.0


def test_the_encoder_queue_is_bounded(gateway, small_index):
    """Concurrent floods past --max-queue 64 get 429 with Retry-After; searches still work."""
    (model,) = answer(request(gateway["url"], "GET", "/_dotbridge"))["models"]
    path = f"/_dotbridge/models/{model['name']}/_embed"
    texts = [f"passage {i} " + "word " * 300 for i in range(60)]
    statuses: list[tuple[int, str | None]] = []

    def flood() -> None:
        resp = request(gateway["url"], "POST", path, {"input": texts})
        statuses.append((resp.status, resp.headers.get("Retry-After")))

    threads = [threading.Thread(target=flood) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {s for s, _ in statuses} <= {200, 429}, statuses
    rejected = [r for s, r in statuses if s == 429]
    assert rejected and all(r is not None and int(r) >= 1 for r in rejected), statuses
    assert any(s == 200 for s, _ in statuses)
    assert healthy(gateway["url"], small_index) < 1.0


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback(gateway, big_index, small_index):
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", gateway["port"]), timeout=10) as sock:
            sock.sendall(http("GET", f"/{big_index}/_search?size={BIG_DOCS}", {}))
            assert sock.recv(1 << 16).startswith(b"HTTP/1.1 200")
    time.sleep(1.0)
    assert healthy(gateway["url"], small_index) < 1.0
    assert "Traceback" not in gateway["log"].read_text()


def test_callers_that_never_read_do_not_hold_the_pool(gateway, big_index, small_index):
    """64 callers ask for a 20 MB answer and never read it; another's small search succeeds."""
    socks = []
    try:
        for _ in range(64):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", gateway["port"]))
            sock.sendall(http("GET", f"/{big_index}/_search?size={BIG_DOCS}", {}))
            socks.append(sock)
            # One at a time into the gateway: 64 answers of 20 MB at once would take more heap
            # than the test node has (the cluster's limit, not the gateway's).
            time.sleep(0.5)
        # The small search gets through: the cluster may shed it while its heap holds those
        # answers (its own 429), but the gateway's pool is free, so no gateway error, and it
        # succeeds as soon as the cluster has room.
        deadline = time.monotonic() + 60
        seen = []
        while True:
            resp = request(gateway["url"], "POST", f"/{small_index}/_search", {"size": 1})
            seen.append(resp.status)
            if resp.status == 200 or time.monotonic() > deadline:
                break
            assert resp.status == 429 and b"dotbridge" not in resp.data, resp.data[:300]
            time.sleep(1.0)
        assert seen[-1] == 200, seen
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1.0)
    assert healthy(gateway["url"], small_index) < 1.0


def test_a_node_killed_mid_answer_breaks_the_connection(tiny_model_dir, tmp_path):
    """The caller sees its connection end early, never a second response in the body."""
    from bridge.nodes import LocalNode

    node_port = port_from("DOTBRIDGE_HOSTILE_NODE_PORT")
    node = LocalNode(port=node_port, heap=os.environ.get("DOTBRIDGE_TEST_HEAP", "512m"))
    url = node.start()
    settings = ConnectionSettings(url=url)
    proc = None
    try:
        client = connect(settings)
        client.indices.create(index="big", body={"settings": {"number_of_shards": 1}})
        for i in range(BIG_DOCS):
            client.index(index="big", id=str(i), body={"text": BIG_TEXT})
        client.indices.refresh(index="big")
        log = tmp_path / "serve.log"
        proc, gw = start_gateway(
            settings, tiny_model_dir, log, port=port_from("DOTBRIDGE_HOSTILE_PORT_2")
        )
        wait_ready(proc, gw, log)
        gw_port = int(gw.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", gw_port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(http("GET", f"/big/_search?size={BIG_DOCS}", {}))
            head = sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            os.kill(node.running_pid(), signal.SIGKILL)
            got = bytearray(head)
            try:
                while chunk := sock.recv(1 << 16):
                    got += chunk
            except (ConnectionResetError, TimeoutError):
                pass
        # The gateway may have had the whole answer before the node died (it reads the cluster
        # as fast as it sends): then it arrives whole; else the connection ends early. Never
        # a second response in the body.
        assert got.count(b"HTTP/1.1 ") == 1, "a second response was written into the body"
        assert b"dotbridge_gateway_exception" not in got
    finally:
        if proc is not None:
            stop(proc)
        node.stop()
        assert Path(log).exists() and "Traceback" not in Path(log).read_text()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made for this test, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dotbridge test gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "gateway.pem", folder / "gateway-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_on_the_gateway_port(opensearch_settings, tiny_model_dir, tmp_path, small_index):
    import urllib3

    cert, key = self_signed(tmp_path)
    log = tmp_path / "serve.log"
    port = port_from("DOTBRIDGE_HOSTILE_PORT_2")
    proc, _ = start_gateway(
        opensearch_settings,
        tiny_model_dir,
        log,
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        port=port,
    )
    verified = urllib3.PoolManager(ca_certs=str(cert), retries=False, timeout=10)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                resp = verified.request(
                    "POST",
                    f"{url}/{small_index}/_search",
                    body=b"{}",
                    headers={"Content-Type": "application/json"},
                )
                break
            except urllib3.exceptions.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        assert resp.status == 200 and json.loads(resp.data)["hits"]["hits"]
        assert "https://127.0.0.1" in log.read_text()
        unverified = urllib3.PoolManager(retries=False, timeout=10)  # the system's CAs only
        with pytest.raises(urllib3.exceptions.SSLError):
            unverified.request("GET", f"{url}/")
        assert status_of(raw(port, http("GET", "/", {"Connection": "close"}))) in (0, 400)
    finally:
        stop(proc)


def test_pass_through_parity_for_answers_over_a_mib(gateway, opensearch_settings, big_index):
    """A 20 MB answer through the gateway: the same bytes and headers as from the cluster."""
    shown = "filter_path=hits.hits._id,hits.hits._source"
    path = f"/{big_index}/_search?size={BIG_DOCS}&sort=_doc&{shown}"
    through = request(gateway["url"], "GET", path)
    direct = request(opensearch_settings.url.rstrip("/"), "GET", path)
    assert through.status == direct.status == 200
    assert len(direct.data) > 10 << 20
    assert through.data == direct.data
    kept = ("content-type", "content-length", "content-encoding")
    assert {k: through.headers.get(k) for k in kept} == {k: direct.headers.get(k) for k in kept}
    gzipped = {"Accept-Encoding": "gzip"}
    through = request(gateway["url"], "GET", path, headers=gzipped)
    direct = request(opensearch_settings.url.rstrip("/"), "GET", path, headers=gzipped)
    assert through.data == direct.data  # urllib3 inflates both; the encoding passed through
    assert through.headers.get("content-encoding") == direct.headers.get("content-encoding")
