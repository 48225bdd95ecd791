"""Finding the evaluation collections one way, and fetching one from an archive over HTTP.

This machine has no internet: the fetch is tested against a real HTTP server on loopback that
serves a BEIR-shaped zip the test builds, with the md5 checked as BEIR's would be.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge import datasets
from bridge.cli import main

REPO = Path(__file__).resolve().parents[1]


def write_collection(root: Path, name: str, n_docs: int = 3) -> Path:
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    docs = "".join(f'{{"_id": "d{i}", "title": "", "text": "text {i}"}}\n' for i in range(n_docs))
    (folder / "corpus.jsonl").write_text(docs)
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "text"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    return folder


def build_archive(tmp: Path, name: str) -> tuple[Path, str]:
    """A zip laid out as BEIR's (NAME/corpus.jsonl ...) and its md5."""
    source = write_collection(tmp / "src", name)
    archive = tmp / "site" / f"{name}.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
        zf.writestr(f"{name}/qrels/train.tsv", "query-id\tcorpus-id\tscore\n")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving `folder`, stopped afterwards."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """dotbridge's cache in a temporary folder, and no DOTBRIDGE_DATASETS."""
    monkeypatch.setenv("DOTBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOTBRIDGE_DATASETS", raising=False)
    return tmp_path / "home" / "datasets"


def test_the_environment_comes_first_then_the_cache(tmp_path, cache, monkeypatch):
    in_cache = write_collection(cache, "mini")
    assert datasets.find("mini") == in_cache
    env_root = tmp_path / "elsewhere"
    in_env = write_collection(env_root, "mini")
    monkeypatch.setenv("DOTBRIDGE_DATASETS", str(env_root))
    assert datasets.find("mini") == in_env
    # A folder that lacks a required file is no copy: the next place is used.
    (in_env / "qrels" / "test.tsv").unlink()
    assert datasets.find("mini") == in_cache


def test_a_missing_collection_names_the_three_ways(cache):
    with pytest.raises(datasets.DatasetNotFound) as caught:
        datasets.locate("no-such-collection")
    message = caught.value.message
    assert "DOTBRIDGE_DATASETS" in message and "../shared/datasets" in message
    assert str(cache) in message and message.count(".") >= 1 and "\n" not in message


def test_fetch_downloads_checks_and_unpacks(tmp_path, cache):
    archive, md5 = build_archive(tmp_path, "mini")
    lines: list[str] = []
    with http_server(archive.parent) as base:
        source = datasets.Archive(f"{base}/mini.zip", md5)
        folder = datasets.fetch("mini", archive=source, say=lines.append)
        assert folder == cache / "mini" and datasets.find("mini") == folder
        assert (folder / "corpus.jsonl").read_text().count("\n") == 3
        assert (folder / "qrels" / "test.tsv").is_file()
        # Fetched once: a second fetch keeps the copy and downloads nothing.
        archive.unlink()
        assert datasets.fetch("mini", archive=source, say=lines.append) == folder
    assert any("already in" in line for line in lines)


def test_a_download_with_another_checksum_is_refused_and_not_kept(tmp_path, cache):
    archive, _ = build_archive(tmp_path, "mini")
    with http_server(archive.parent) as base:
        wrong = datasets.Archive(f"{base}/mini.zip", "0" * 32)
        with pytest.raises(datasets.DatasetNotFound, match="does not match its published md5"):
            datasets.fetch("mini", archive=wrong)
    assert datasets.find("mini") is None
    assert not (cache / "downloads" / "mini.zip").exists()


def test_cli_fetch_from_a_mirror_checks_beirs_md5(tmp_path, cache):
    archive, _ = build_archive(tmp_path, "scifact")  # not BEIR's bytes: its md5 differs
    with http_server(archive.parent) as base:
        result = CliRunner().invoke(
            main, ["datasets", "fetch", "scifact", "--from", f"{base}/scifact.zip"]
        )
    assert result.exit_code == 1, result.output
    assert "does not match its published md5 5f7d1de60b170fc8027bb7898e2efca1" in result.output
    assert "Traceback" not in result.output and not (cache / "scifact").exists()


def test_cli_refuses_a_collection_that_is_not_downloadable(cache):
    for name, expected in (
        ("trec-dl-2019-passage-subset", "cannot be fetched: it is built"),
        ("msmarco-v2", "not one dotbridge can fetch: choose nfcorpus, scifact"),
    ):
        result = CliRunner().invoke(main, ["datasets", "fetch", name])
        assert result.exit_code == 1 and expected in result.output, result.output


def test_an_unreachable_mirror_is_one_sentence(tmp_path, cache):
    from tests.node_fixtures import free_port

    result = CliRunner().invoke(
        main, ["datasets", "fetch", "nfcorpus", "--from", f"http://127.0.0.1:{free_port()}/x.zip"]
    )
    assert result.exit_code == 1 and "Could not download nfcorpus" in result.output
    assert "Traceback" not in result.output


def test_list_says_where_each_is_or_how_to_get_it(tmp_path, cache, monkeypatch):
    write_collection(tmp_path / "mine", "nfcorpus")
    monkeypatch.setenv("DOTBRIDGE_DATASETS", str(tmp_path / "mine"))
    out = CliRunner().invoke(main, ["datasets", "list"]).output
    assert f"nfcorpus: {tmp_path / 'mine' / 'nfcorpus'}" in out
    assert "looked in, in order: $DOTBRIDGE_DATASETS" in out


def test_check_in_a_clone_without_data_stops_with_one_sentence(tmp_path):
    """What `make test` runs first, before installing anything: a clone with no ../shared and
    an empty cache hears, in one sentence and exit status 1, the three ways to get SciFact."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "bridge", clone / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        "PATH": os.environ["PATH"],
        "DOTBRIDGE_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "bridge.datasets", "check"],  # -S: no site-packages
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "No copy of the dataset scifact was found" in lines[0]
    assert "DOTBRIDGE_DATASETS" in lines[0] and "dotbridge datasets fetch scifact" in lines[0]
    # With the data where DOTBRIDGE_DATASETS points, the same check passes.
    write_collection(tmp_path / "data", "scifact")
    env["DOTBRIDGE_DATASETS"] = str(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "bridge.datasets", "check"], cwd=clone, env=env, timeout=60
    )
    assert proc.returncode == 0


def test_path_prints_the_folder_for_scripts(tmp_path, cache, monkeypatch):
    folder = write_collection(cache, "mini")
    result = CliRunner().invoke(main, ["datasets", "path", "mini"])
    assert result.exit_code == 0 and result.output == f"{folder}\n"
    missing = CliRunner().invoke(main, ["datasets", "path", "other"])
    assert missing.exit_code == 1 and "No copy of the dataset other was found" in missing.output
