"""`make bench`'s targets table stays runnable: a tiny real run (the tests' tiny model, the test
node) goes end to end, and every verdict follows the measurement it names (no timings checked)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import targets
from bridge.config import ConnectionSettings

pytestmark = pytest.mark.integration

README = "# Project\n\nbefore\n\n<!-- targets:start -->\nold\n<!-- targets:end -->\n\nafter\n"


@pytest.fixture(scope="module")
def tiny_run(
    opensearch_settings: ConnectionSettings,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], str, Path]:
    """One run of the script on a slice: its JSON, what it printed, and the JSON's path."""
    out = tmp_path_factory.mktemp("targets") / "targets.json"
    argv = ["--model", str(tiny_model_dir), "--docs", "30", "--queries", "6", "--warmup", "1"]
    argv += ["--out", str(out), "--int8-quality", str(out.with_name("absent.json"))]
    argv += ["--gpu-json", str(out.with_name("absent-gpu.json"))]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("OPENSEARCH_URL", opensearch_settings.url)
        assert targets.main(argv) == 0
    return json.loads(out.read_text()), printed.getvalue(), out


def table_rows(markdown: str) -> list[list[str]]:
    """The targets table's body rows, as cells (the first table printed)."""
    block = markdown.split("| what |", 1)[1].split("\n\n", 1)[0]
    lines = block.splitlines()[2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in lines]


def rows_of(result: dict[str, Any], **files: Any) -> dict[tuple[str, str], targets.Row]:
    return {(r.what.split(" (")[0], r.runtime): r for r in targets.target_rows(result, **files)}


def test_a_tiny_run_measures_every_row_and_cleans_up(tiny_run, os_client) -> None:
    result, printed, _ = tiny_run
    encode = result["encode"]
    # Correctness first: ONNX float32 gives torch's vectors on the very queries timed.
    assert encode["onnx_float32_vs_torch_max_abs_diff"] <= 1e-4
    assert {label for label, *_ in targets.RUNTIMES} == set(encode["runtimes"])
    assert all(v["p95_ms"] >= v["p50_ms"] > 0 and v["n"] == 6 for v in encode["runtimes"].values())

    timings = result["ingest"]["timings"]
    seed = timings["seed loop (torch one-by-one)"]
    assert result["ingest"]["docs"] == seed["docs"] == 30
    for label, *_ in targets.RUNTIMES:
        piped = timings[f"pipeline {label}"]
        assert piped["docs"] == 30
        assert piped["vs_seed_loop"] == pytest.approx(piped["docs_per_s"] / seed["docs_per_s"])

    assert set(result["search"]) == {"bm25", "knn", "hybrid", "rerank"}
    assert set(result["search"]["bm25"]) == {"-"}
    for mode in ("knn", "hybrid", "rerank"):
        assert set(result["search"][mode]) == set(targets.SEARCH_RUNTIMES)
    assert os_client.indices.get(index="bench-targets-*") == {}

    # The printed table: every target of issue 13 once, every row with a runtime and a verdict.
    cells = table_rows(printed)
    assert len(cells) == len(result["rows"]) == 12
    groups = [c[0] for c in cells if c[0]]
    assert [g.split(" (")[0].split(",")[0] for g in groups] == [
        "query encode p50",
        "ingest vs the seed's one-by-one torch loop",
        "int8 quality cost",
        "hybrid p50",
        "rerank on the server p50",
        "GPU encode",
    ]
    assert all(len(c) == 6 and c[3] and c[5].split(" ")[0] in ("yes", "no", "-") for c in cells)
    assert targets.NO_INT8_QUALITY in printed and targets.NO_GPU in printed
    assert f"{result['queries']} SciFact test queries" in printed


def test_each_verdict_flips_with_its_measurement(tiny_run) -> None:
    result = tiny_run[0]
    runtime = "onnx float32"
    query = f"queries by {runtime}"
    s = result["search"]
    bm25, knn = s["bm25"]["-"]["p50_ms"], s["knn"][runtime]["p50_ms"]
    encode = result["encode"]["runtimes"][runtime]["p50_ms"]
    seed_rate = result["ingest"]["timings"]["seed loop (torch one-by-one)"]["docs_per_s"]
    cases = [  # (row, where the measurement lives, its bound)
        (("query encode p50, MiniLM, CPU", runtime),
         ("encode", "runtimes", runtime, "p50_ms"), targets.ENCODE_TARGET_MS, "<="),
        (("hybrid p50", query),
         ("search", "hybrid", runtime, "p50_ms"), knn + targets.HYBRID_SLACK_MS, "<="),
        (("rerank on the server p50", query),
         ("search", "rerank", runtime, "p50_ms"), bm25 + encode + targets.RERANK_SLACK_MS, "<="),
        (("ingest vs the seed's one-by-one torch loop, CPU, MiniLM", "pipeline onnx int8"),
         ("ingest", "timings", "pipeline onnx int8", "vs_seed_loop"),
         targets.INGEST_TARGET_INT8, ">="),
    ]  # fmt: skip
    for key, path, bound, direction in cases:
        for factor, inside in ((0.9, direction == "<="), (1.1, direction == ">=")):
            changed = copy.deepcopy(result)
            leaf = changed
            for step in path[:-1]:
                leaf = leaf[step]
            leaf[path[-1]] = bound * factor
            if path[-1] == "vs_seed_loop":
                leaf["docs_per_s"] = seed_rate * bound * factor
            assert rows_of(changed)[key].met is inside, (key, factor)

    # A fast vector that is not torch's meets nothing, however fast.
    wrong = copy.deepcopy(result)
    wrong["encode"]["onnx_float32_vs_torch_max_abs_diff"] = 1e-3
    wrong["encode"]["runtimes"][runtime]["p50_ms"] = targets.ENCODE_TARGET_MS / 10
    row = rows_of(wrong)[("query encode p50, MiniLM, CPU", runtime)]
    assert row.met is False and "not exact" in row.verdict()
    # int8 is shown for information, never judged against the exact target.
    assert rows_of(result)[("query encode p50, MiniLM, CPU", "onnx int8")].met is None


def quality(diffs: dict[tuple[str, str], float]) -> tuple[list[dict[str, Any]], str]:
    """benchmarks/int8_quality.py's JSON with these int8 - float32 differences."""
    results: dict[str, dict[str, Any]] = {}
    for (collection, mode), diff in diffs.items():
        res = results.setdefault(collection, {"collection": collection, "ndcg@10": {}})
        res["ndcg@10"][mode] = {"float32": 0.6, "int8": 0.6 + diff}
    return list(results.values()), "int8_quality.json"


def test_int8_quality_comes_from_its_file(tiny_run) -> None:
    result = tiny_run[0]
    key = ("int8 quality cost", "onnx int8")
    limit = targets.INT8_MAX_NDCG_DROP
    pairs = [(c, m) for c in targets.QUALITY_COLLECTIONS for m in targets.DENSE_MODES]
    assert rows_of(result)[key].measured == targets.NO_INT8_QUALITY
    assert rows_of(result)[key].met is None

    within = {pair: -limit / 2 for pair in pairs}
    assert rows_of(result, int8_quality=quality(within))[key].met is True
    worse = {**within, pairs[-1]: -limit * 2}
    row = rows_of(result, int8_quality=quality(worse))[key]
    assert row.met is False and " ".join(pairs[-1]) in row.measured
    better = {**within, pairs[0]: limit * 2}  # int8 better by more than the margin: not within
    assert rows_of(result, int8_quality=quality(better))[key].met is False
    partial = {pair: d for pair, d in within.items() if pair[0] == "scifact"}
    row = rows_of(result, int8_quality=quality(partial))[key]
    assert row.met is None and "missing: nfcorpus" in row.verdict()


def test_a_cpu_smoke_gpu_file_is_not_a_gpu_measurement(tiny_run) -> None:
    smoke = {"smoke": True, "environment": {"device": "cpu"}, "throughput": {"rows": []}}
    row = rows_of(tiny_run[0], gpu=(smoke, "gpu.json"))[
        ("GPU encode, seed architecture, 256 tokens", "-")
    ]
    assert row.measured == targets.NO_GPU and row.met is None


def test_readme_block_is_rewritten_from_a_runs_json(tiny_run, tmp_path: Path) -> None:
    result, _, out = tiny_run
    readme = tmp_path / "README.md"
    readme.write_text(README)
    drops = {(c, m): -0.001 for c in targets.QUALITY_COLLECTIONS for m in targets.DENSE_MODES}
    quality_file = tmp_path / "int8_quality.json"
    quality_file.write_text(json.dumps(quality(drops)[0]))
    argv = ["--from-json", str(out), "--readme", str(readme), "--out", str(tmp_path / "t.json")]
    assert targets.main([*argv, "--int8-quality", str(quality_file)]) == 0

    text = readme.read_text()
    head, block = text.split("<!-- targets:start -->\n")
    block, tail = block.split("\n<!-- targets:end -->")
    assert head == README.split("<!-- targets:start -->")[0] and tail == "\n\nafter\n"
    assert "old" not in block
    cells = table_rows(block)
    assert len(cells) == len(result["rows"])
    int8 = next(c for c in cells if c[0] == "int8 quality cost")
    assert "largest int8 - float32 -0.0010" in int8[4]
    assert int8[5] == "yes"
    rerendered = json.loads((tmp_path / "t.json").read_text())
    assert rerendered["encode"] == result["encode"]  # nothing measured again

    bare = tmp_path / "BARE.md"
    bare.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="no <!-- targets:start --> marker"):
        targets.main([*argv[:2], "--readme", str(bare), "--out", str(tmp_path / "u.json")])
    assert bare.read_text() == "# no markers\n"
