"""A real `dotbridge serve` process for the gateway tests: started once per session on a free
loopback port, in front of the session's OpenSearch node (and one in front of its Elasticsearch
node, for the tests of both engines), serving the tiny random model."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from bridge.config import ConnectionSettings
from tests.ingest_helpers import datasets_dir, read_jsonl
from tests.node_fixtures import free_port

SCIFACT = datasets_dir() / "scifact"
START_TIMEOUT = float(os.environ.get("DOTBRIDGE_GATEWAY_START_TIMEOUT", "180"))
HTTP = urllib3.PoolManager(maxsize=32, retries=False, timeout=urllib3.Timeout(total=120))


def start_gateway(
    upstream: ConnectionSettings, model_dir: Path, log: Path, *extra: str, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    """Start `python -m bridge serve` (credentials only through the environment)."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--port",
        str(port),
        "--url",
        upstream.url,
        "--model",
        str(model_dir),
        "--pooling",
        "mean",
        "--device",
        "cpu",
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if upstream.user:
        env["OPENSEARCH_USER"] = upstream.user
        env["OPENSEARCH_PASSWORD"] = upstream.password or ""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dotbridge serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # 401: up, in front of a secured cluster (its API is for authenticated callers).
            if HTTP.request("GET", f"{url}/_dotbridge", timeout=2).status in (200, 401):
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"dotbridge serve did not answer in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_gateway(
    upstream: ConnectionSettings, model_dir: Path, log: Path, *extra: str, port: int | None = None
) -> Iterator[str]:
    """`dotbridge serve` started (`start_gateway`) and answering; stopped afterwards."""
    proc, url = start_gateway(upstream, model_dir, log, *extra, port=port)
    try:
        wait_ready(proc, url, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gateway_url(
    opensearch_settings: ConnectionSettings,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("gateway") / "serve.log"
    # DOTBRIDGE_GATEWAY_TEST_PORT pins the session gateway's port (else any free one).
    port = int(os.environ.get("DOTBRIDGE_GATEWAY_TEST_PORT") or 0) or None
    # No query-vector cache: the batching tests count the encodes of repeated texts
    # (test_gateway_vector_cache starts its own gateway with the cache).
    flags = ("--meta-ttl", "1", "--query-cache-size", "0")
    with running_gateway(opensearch_settings, tiny_model_dir, log, *flags, port=port) as url:
        yield url


@pytest.fixture(scope="session")
def es_gateway_url(
    elasticsearch_settings: ConnectionSettings,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The gateway in front of the session's Elasticsearch node (the engine detected)."""
    log = tmp_path_factory.mktemp("gateway-es") / "serve.log"
    with running_gateway(elasticsearch_settings, tiny_model_dir, log, "--meta-ttl", "1") as url:
        yield url


def request(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    ndjson: bool = False,
    headers: dict[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    """One HTTP request as a client sends it (JSON or NDJSON body)."""
    data = None
    sent = dict(headers or {})
    if body is not None:
        if ndjson:
            data = b"".join(json.dumps(line).encode() + b"\n" for line in body)
            sent.setdefault("Content-Type", "application/x-ndjson")
        else:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
    return HTTP.request(method, base + path, body=data, headers=sent)


def answer(resp: urllib3.BaseHTTPResponse) -> Any:
    return json.loads(resp.data) if resp.data else None


def dotbridge_index(client, encoder, n_docs: int) -> Iterator[str]:
    """SciFact's first documents in a dotbridge index (2 shards) with its per-mode aliases;
    deleted afterwards."""
    import uuid

    from bridge.backends import backend_of
    from bridge.gateway.aliases import mode_aliases
    from bridge.indexes import IndexOptions, IndexSpec, ensure_index

    name = f"test-gateway-{uuid.uuid4().hex[:8]}"
    corpus = read_jsonl(SCIFACT / "corpus.jsonl", n_docs)
    vectors = encoder.encode_passages([f"{d['title']} {d['text']}" for d in corpus])
    ensure_index(client, name, IndexSpec.of(encoder), IndexOptions(shards=2))
    try:
        actions = (
            {
                "_index": name,
                "_id": d["_id"],
                "doc_id": d["_id"],
                "title": d["title"],
                "text": d["text"],
                "vector": v.tolist(),
            }
            for d, v in zip(corpus, vectors, strict=True)
        )
        backend_of(client).bulk(client, actions)
        client.indices.refresh(index=name)
        mode_aliases(client, name)
        yield name
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)
