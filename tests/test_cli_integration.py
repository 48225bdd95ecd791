"""The command line on a real node: the index knows its model, eval and eval-all end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bridge import report
from bridge.backends import backend_of
from bridge.cli import main
from bridge.client import connect
from bridge.config import ModelSettings
from bridge.evaluate import load_split
from bridge.indexes import available_analyzer, encoder_for_index
from bridge.search import make_searcher
from ingest.pipeline import ingest_corpus
from tests.ingest_helpers import datasets_dir

pytestmark = pytest.mark.integration

SCIFACT = datasets_dir() / "scifact"
N_DOCS = 300


@pytest.fixture
def env(opensearch_settings) -> dict[str, str]:
    return {"OPENSEARCH_URL": opensearch_settings.url}


@pytest.fixture
def own_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model, so a test may retrain it in place."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def ingest_slice(client, index: str, model_dir: Path, tmp_path: Path, **options) -> None:
    encoder = ModelSettings(model=str(model_dir), device="cpu", **options).load()
    stats = ingest_corpus(
        SCIFACT / "corpus.jsonl",
        client=client,
        index=index,
        encoder=encoder,
        limit=N_DOCS,
        rejects=tmp_path / "rejects.jsonl",
        progress=False,
    )
    assert stats.indexed == N_DOCS


def json_ids(output: str) -> list[str]:
    return [json.loads(line)["doc_id"] for line in output.splitlines()]


def test_search_without_model_uses_the_model_the_index_recorded(
    os_client, index_name, own_model, minilm_dir, env, tmp_path
):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    query = "vitamin d and bone fractures"
    expected = make_searcher(
        "rerank",
        os_client,
        index_name,
        encoder_for_index(os_client, index_name, ModelSettings(device="cpu")),
    ).search(query, k=5)
    runner = CliRunner()
    args = ["search", query, "--index", index_name, "--mode", "rerank", "-k", "5", "--json"]
    result = runner.invoke(main, [*args, "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    assert json_ids(result.output) == [h.doc_id for h in expected]

    # Another model is refused in one sentence that names the index's model.
    other = runner.invoke(main, [*args, "--model", str(minilm_dir)], env=env)
    assert other.exit_code == 1
    message = other.output.strip()
    assert message.startswith("Error: Index") and len(message.splitlines()) == 1
    assert str(own_model.resolve()) in message and "Traceback" not in message


def test_retrained_weights_in_the_same_directory_are_refused(
    os_client, index_name, own_model, env, tmp_path
):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(own_model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    model.save_pretrained(own_model)  # "retrained": same path, other weights
    runner = CliRunner()
    for mode in ("knn", "rerank"):
        result = runner.invoke(
            main, ["search", "cells", "--index", index_name, "--mode", mode], env=env
        )
        assert result.exit_code == 1, result.output
        assert "not the ones that made the index" in result.output
        assert str(own_model.resolve()) in result.output
    # BM25 needs no model and still answers.
    bm25 = runner.invoke(
        main, ["search", "cells", "--index", index_name, "--mode", "bm25"], env=env
    )
    assert bm25.exit_code == 0, bm25.output


def test_search_names_the_model_when_it_cannot_be_loaded(
    os_client, index_name, own_model, env, tmp_path
):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    shutil.rmtree(own_model)
    result = CliRunner().invoke(
        main, ["search", "cells", "--index", index_name, "--mode", "knn"], env=env
    )
    assert result.exit_code == 1
    assert f"was built by {own_model.resolve()} (mean pooling, dot" in result.output
    assert "--model" in result.output and "Traceback" not in result.output


def test_eval_cli_searches_writes_the_run_and_prints_metrics(
    os_client, index_name, own_model, env, tmp_path
):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    out = tmp_path / "knn.trec"
    result = CliRunner().invoke(
        main,
        ["eval", "scifact", "--index", index_name, "--mode", "knn", "--k", "100"]
        + ["--out", str(out), "--device", "cpu", "--no-progress"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    split = load_split(SCIFACT)
    assert f"scifact ({len(split.queries)} queries), knn:" in result.output
    metrics = dict(re.findall(r"^\s+(\S+)\s+([0-9.]+)$", result.output, flags=re.M))
    assert set(metrics) == {"nDCG@10", "MRR@10", "R@100"}  # the README's names
    # The index holds 300 of SciFact's documents: the eval says how many judged ones it lacks.
    judged = {doc for docs in split.qrels.values() for doc in docs}
    with (SCIFACT / "corpus.jsonl").open() as f:
        indexed = {json.loads(next(f))["_id"] for _ in range(N_DOCS)}
    missing = len(judged - indexed)
    assert 0 < missing < len(judged)
    assert f"{missing:,} of the {len(judged):,} judged documents are not in the index" in (
        result.output
    )
    assert all(0.0 <= float(v) <= 1.0 for v in metrics.values())
    lines = out.read_text().splitlines()
    assert {line.split()[0] for line in lines} <= set(split.queries)
    assert max(int(line.split()[3]) for line in lines) == 100

    # The written run scored as it is (bm25 --run) gives the same numbers.
    rescored = CliRunner().invoke(main, ["eval", str(SCIFACT), "--mode", "bm25", "--run", str(out)])
    assert rescored.exit_code == 0, rescored.output
    again = dict(re.findall(r"^\s+(\S+)\s+([0-9.]+)$", rescored.output, flags=re.M))
    assert again == metrics


def test_eval_reports_recall_only_as_deep_as_the_run_goes(
    os_client, index_name, own_model, env, tmp_path
):
    """rerank re-scores the BM25 top 100: with -k 1000 its run is 100 deep, so R@1000 (which
    would repeat R@100) is not printed, as the README's table shows a dash there."""
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    result = CliRunner().invoke(
        main,
        ["eval", "scifact", "--index", index_name, "--mode", "rerank", "-k", "1000"]
        + ["--device", "cpu", "--no-progress"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    printed = set(re.findall(r"^\s+(\S+)\s+[0-9.]+$", result.output, flags=re.M))
    assert printed == {"nDCG@10", "MRR@10", "R@100"}


@pytest.mark.parametrize("engine_name", ["opensearch", "elasticsearch"])
def test_eval_all_cli_on_a_small_collection(engine_name, request, tmp_path):
    """eval-all on a 200-document slice of SciFact with its judged queries, into a README: the
    table between the engine's own markers, saying which engine and analyzer it measured."""
    settings = request.getfixturevalue(f"{engine_name}_settings")
    os_client = connect(settings)
    env = {"OPENSEARCH_URL": settings.url}
    datasets = tmp_path / "datasets"
    mini = datasets / "scifact-mini"
    (mini / "qrels").mkdir(parents=True)
    with (SCIFACT / "corpus.jsonl").open() as f:
        docs = [next(f) for _ in range(200)]
    (mini / "corpus.jsonl").write_text("".join(docs))
    ids = {json.loads(d)["_id"] for d in docs}
    split = load_split(SCIFACT)
    judged = {q: rel for q, rel in split.qrels.items() if ids & rel.keys()}
    assert len(judged) >= 5
    (mini / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{g}\n" for q, rel in judged.items() for d, g in rel.items())
    )
    (mini / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": split.queries[q]}) + "\n" for q in judged)
    )
    readme = tmp_path / "README.md"
    readme.write_text("# Results\n")
    index = "eval-minilm-scifact-mini"
    os_client.indices.delete(index=index, ignore_unavailable=True)
    try:
        result = CliRunner().invoke(
            main,
            ["eval-all", "--readme", str(readme), "--datasets", str(datasets)]
            + ["--collections", "scifact-mini", "--runs-dir", str(tmp_path / "runs")]
            + ["--device", "cpu", "--no-progress"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        text = readme.read_text()
        for mode in ("bm25", "rerank", "knn", "hybrid"):
            row = re.search(rf"^\| scifact-mini \| {mode} \| .*$", text, flags=re.M)
            assert row, text
            assert row.group(0).count("|") == 9  # 8 cells
            assert (tmp_path / "runs" / f"scifact-mini.{mode}.trec").is_file()
        assert f"--collections scifact-mini --datasets {datasets}" in text
        assert os_client.count(index=index)["count"] == 200
        start, end = report.markers(engine_name)
        assert text.count(start) == 1 and text.index(start) < text.index(end)
        backend = backend_of(os_client)
        product = f"{backend.product} {backend.version(os_client)}"
        # english where the cluster has it (the local Elasticsearch has not: standard).
        analyzer = available_analyzer(os_client, "english")
        assert f"on {product}, one shard" in text and f"with the {analyzer} analyzer" in text
    finally:
        os_client.indices.delete(index=index, ignore_unavailable=True)


# ---- one sentence, never a traceback -------------------------------------------------------------


def one_sentence(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_device_errors_are_one_sentence(os_client, index_name, own_model, env, tmp_path):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    runner = CliRunner()
    args = ["search", "cells", "--index", index_name, "--mode", "knn"]
    tpu = runner.invoke(main, [*args, "--device", "tpu"], env=env)  # a usage error: exit 2
    assert tpu.exit_code == 2 and "Traceback" not in tpu.output
    assert "'tpu' is not a device; choose one of: auto, cpu, cuda, cuda:N, mps." in tpu.output
    if not torch.cuda.is_available():
        cuda = one_sentence(runner.invoke(main, [*args, "--device", "cuda"], env=env))
        assert "no CUDA device" in cuda and "--device cpu" in cuda
    dtype = runner.invoke(main, [*args, "--dtype", "int4"], env=env)
    assert dtype.exit_code == 2 and "'int4' is not one of" in dtype.output
    # The gateway takes the same device names, refused before it loads or connects.
    served = runner.invoke(main, ["serve", "--device", "tpu"], env=env)
    assert served.exit_code == 2 and "'tpu' is not a device" in served.output


def test_a_cluster_error_after_connecting_is_one_sentence(
    os_client, index_name, own_model, env, tmp_path
):
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    os_client.indices.close(index=index_name)
    long_query = "vitamin d deficiency and fractures in older adults " * 8  # analysed first
    result = CliRunner().invoke(
        main, ["search", long_query, "--index", index_name, "--mode", "bm25"], env=env
    )
    message = one_sentence(result)
    assert "refused the request (HTTP 400" in message and "check the index name" in message
    assert "index_closed_exception" in message


def test_model_minilm_is_the_packaged_model_and_the_index_records_the_name(
    os_client, index_name, minilm_dir, env, tmp_path
):
    """`--model minilm` works offline on every command; the index records `minilm`, so a
    search without --model loads it again from the package (in any virtualenv)."""
    corpus = tmp_path / "c.jsonl"
    with (SCIFACT / "corpus.jsonl").open() as f:
        corpus.write_text("".join(next(f) for _ in range(20)))
    runner = CliRunner()
    args = ["ingest", str(corpus), "--index", index_name, "--model", "minilm"]
    done = runner.invoke(main, [*args, "--device", "cpu", "--no-progress"], env=env)
    assert done.exit_code == 0, done.output
    (mapping,) = os_client.indices.get_mapping(index=index_name).values()
    assert mapping["mappings"]["_meta"]["dotbridge"]["model"] == "minilm"
    query = ["search", "vitamin d", "--index", index_name, "-k", "3", "--json"]
    recorded = runner.invoke(main, [*query, "--mode", "knn"], env=env)
    by_dir = runner.invoke(main, [*query, "--mode", "knn", "--model", str(minilm_dir)], env=env)
    assert recorded.exit_code == 0 and by_dir.exit_code == 0, recorded.output + by_dir.output
    assert json_ids(recorded.output) == json_ids(by_dir.output) and json_ids(recorded.output)


def test_search_piped_into_head_ends_quietly(os_client, index_name, own_model, env, tmp_path):
    """`dotbridge search ... | head -1`: head leaves after one line; the rest of the output goes
    nowhere, with no `Error: Broken pipe.` and no traceback."""
    ingest_slice(os_client, index_name, own_model, tmp_path, pooling="mean")
    search = [sys.executable, "-m", "bridge", "search", "cells", "--index", index_name]
    search += ["--mode", "bm25", "-k", "300", "--json"]
    proc = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" 2>"$ERR" | head -1', "bash", *search],
        env={**os.environ, **env, "ERR": str(tmp_path / "stderr")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(proc.stdout.splitlines()) == 1 and json.loads(proc.stdout)["rank"] == 1
    assert (tmp_path / "stderr").read_text() == ""
    assert proc.returncode == 141  # the search's status through pipefail: SIGPIPE's 128 + 13


def test_status_asks_the_local_node_by_port_as_start_and_stop_name_it(opensearch_settings):
    port = urllib.parse.urlsplit(opensearch_settings.url).port
    result = CliRunner().invoke(main, ["opensearch", "status", "--port", str(port)], env={})
    assert result.exit_code == 0, result.output
    assert f"url:      http://127.0.0.1:{port}" in result.output
    assert re.search(r"health:\s+(green|yellow)", result.output)
