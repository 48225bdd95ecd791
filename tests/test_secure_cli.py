"""The CLI against a secured node: TLS, 401, 403 and a read-only user, told in one sentence.

Through the real command line (click's runner or a subprocess), with the session's generated
CA and users. The password must never show: not in output, rejects files, status, or any
process's command line.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.client import connect

pytestmark = pytest.mark.integration

TOPICS = [
    "vitamin d and bone fractures", "insulin resistance in muscle", "malaria parasites in blood",
    "gut bacteria and obesity", "tumour suppressor genes", "sleep and memory consolidation",
    "influenza vaccine efficacy", "stem cells in the heart", "antibiotic resistant bacteria",
    "blood pressure and salt", "zebrafish fin regeneration", "telomeres and ageing",
    "hepatitis c treatment", "statins and cholesterol", "asthma in children",
    "dengue virus mosquitoes", "kidney stones and calcium", "thyroid hormone levels",
    "prion protein folding", "coral reef bleaching",
]  # fmt: skip
RECORDS = [
    {"_id": f"d{i}", "title": topic.title(), "text": f"A study of {topic}, measured twice."}
    for i, topic in enumerate(TOPICS)
]


def env_for(settings, *, ca: bool = True) -> dict[str, str | None]:
    """The environment a user sets for the cluster (None removes a variable)."""
    return {
        "OPENSEARCH_URL": settings.url,
        "OPENSEARCH_USER": settings.user,
        "OPENSEARCH_PASSWORD": settings.password,
        "OPENSEARCH_CA_CERTS": settings.ca_certs if ca else None,
        "OPENSEARCH_VERIFY_CERTS": None,
    }


def run(args: list[str], env: dict[str, str | None]):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_sentence(output: str) -> str:
    """The single error line of a failed command (no traceback, no second line)."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: ") and lines[0].endswith("."), output
    return lines[0]


@pytest.fixture
def corpus(tmp_path) -> Path:
    """20 records and one line without an id (so a rejects file is written)."""
    lines = [json.dumps(r) for r in RECORDS] + [json.dumps({"text": "no id here"})]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest_args(corpus, index, model, rejects):
    return [
        "ingest", corpus, "--index", index, "--model", model, "--device", "cpu",
        "--no-progress", "--rejects", rejects,
    ]  # fmt: skip


def test_without_the_ca_one_sentence_names_ca_certs(secure_settings):
    for args in (["opensearch", "status"], ["search", "q", "--index", "x", "--mode", "bm25"]):
        result = run(args, env_for(secure_settings, ca=False))
        assert result.exit_code == 1
        line = one_sentence(result.output)
        assert "is not trusted" in line and "--ca-certs" in line
        assert "OPENSEARCH_CA_CERTS" in line


def test_admin_status_ingest_and_search(secure_settings, secure_index, tiny_model_dir, corpus):
    env = env_for(secure_settings)
    password = secure_settings.password
    status = run(["opensearch", "status"], env)
    assert status.exit_code == 0, status.output
    assert "version:  3.5.0" in status.output and "opensearch-security" in status.output
    rejects = corpus.with_suffix(".rejects.jsonl")
    ingested = run(ingest_args(corpus, secure_index, tiny_model_dir, rejects), env)
    assert ingested.exit_code == 2, ingested.output  # the line without an id
    assert "1 of 21 records were rejected" in ingested.output
    assert connect(secure_settings).count(index=secure_index)["count"] == 20
    first = RECORDS[3]
    for mode in ("bm25", "knn"):
        found = run(
            ["search", first["title"], "--index", secure_index, "--mode", mode, "-k", "20",
             "--model", tiny_model_dir, "--device", "cpu", "--json"],
            env,
        )  # fmt: skip
        assert found.exit_code == 0, found.output
        hits = [json.loads(line) for line in found.output.splitlines()]
        assert len(hits) == 20 if mode == "knn" else hits
        if mode == "bm25":
            assert hits[0]["doc_id"] == first["_id"]
        assert password not in found.output
    for text in (status.output, ingested.output, rejects.read_text()):
        assert password not in text


def test_wrong_password_gives_the_credentials_sentence(secure_settings):
    env = {**env_for(secure_settings), "OPENSEARCH_PASSWORD": "not-the-password"}
    result = run(["opensearch", "status"], env)
    assert result.exit_code == 1
    line = one_sentence(result.output)
    assert line == (
        f"Error: OpenSearch at {secure_settings.url} refused the credentials of user 'admin' "
        "(HTTP 401): check --user (OPENSEARCH_USER) and the password in OPENSEARCH_PASSWORD."
    )


def test_reader_searches_but_may_not_ingest(
    secure_settings, reader_settings, secure_index, tiny_model_dir, corpus
):
    admin_env, reader_env = env_for(secure_settings), env_for(reader_settings)
    rejects = corpus.with_suffix(".rejects.jsonl")
    assert run(ingest_args(corpus, secure_index, tiny_model_dir, rejects), admin_env).exit_code == 2
    rejects.unlink()
    admin = connect(secure_settings)
    before = admin.indices.get_settings(index=secure_index)
    found = run(["search", "cells", "--index", secure_index, "--mode", "bm25"], reader_env)
    assert found.exit_code == 0 and "rank" in found.output, found.output
    # A model that does not exist: were it loaded before the check, that would be the error.
    missing_model = corpus.parent / "no-model-here"
    new_index = f"{secure_index}-new"
    for index, action in ((new_index, "change the settings of"), (secure_index, "change the")):
        result = run(ingest_args(corpus, index, missing_model, rejects), reader_env)
        assert result.exit_code == 1
        line = one_sentence(result.output)
        assert line.startswith(f"Error: User 'reader' may not {action}"), line
        assert "nothing was written" in line and "no-model-here" not in line
        assert reader_settings.password not in result.output
    assert not admin.indices.exists(index=new_index)
    assert admin.count(index=secure_index)["count"] == 20
    assert admin.indices.get_settings(index=secure_index) == before
    assert not rejects.exists()


def test_insecure_warns_once_on_stderr(secure_settings, secure_index):
    client = connect(secure_settings)
    fields = {"doc_id": {"type": "keyword"}, "title": {"type": "text"}, "text": {"type": "text"}}
    client.indices.create(index=secure_index, body={"mappings": {"properties": fields}})
    client.index(index=secure_index, id="a", body={"doc_id": "a", "text": "anything"}, refresh=True)
    env = {k: v for k, v in {**os.environ, **env_for(secure_settings, ca=False)}.items() if v}
    args = ["search", "anything", "--index", secure_index, "--mode", "bm25", "--insecure"]
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert " a " in proc.stdout  # the hit, found through several requests
    warnings = [line for line in proc.stderr.splitlines() if "not verified" in line]
    assert warnings == [
        f"WARNING bridge.client: TLS certificates of {secure_settings.url} are not verified "
        "(--insecure): anyone on the network path can read and change this connection."
    ]
    assert "InsecureRequestWarning" not in proc.stderr
    assert secure_settings.password not in proc.stdout + proc.stderr


def test_password_prompt_on_a_terminal_is_hidden(secure_settings):
    """No OPENSEARCH_PASSWORD on a terminal: a prompt that does not echo what is typed."""
    env = {k: v for k, v in {**os.environ, **env_for(secure_settings)}.items() if v}
    del env["OPENSEARCH_PASSWORD"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "opensearch", "status"],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""
    try:
        seen += _read_until(leader, b"Password for admin", timeout=60)
        os.write(leader, secure_settings.password.encode() + b"\n")
        seen += _read_until(leader, b"plugins:", timeout=60)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert f"Password for admin at {secure_settings.url}" in text
    assert "version:  3.5.0" in text
    assert secure_settings.password not in text


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    assert marker in data, data.decode(errors="replace")
    return data
