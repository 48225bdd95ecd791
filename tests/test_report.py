"""The eval-all report: the README results table and its markers (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import report

# ---- the README table ----------------------------------------------------------------------------


ROWS = [
    report.EvalRow(
        "scifact", "bm25", "BM25", 300, {"nDCG@10": 0.6761, "RR@10": 0.5, "R@1000": 0.9}
    ),
    report.EvalRow(
        "dl19", "knn", "k-NN", 43, {"nDCG@10": 0.7, "RR(rel=2)@10": 0.8}, note="subset corpus"
    ),
]


def test_table_columns_and_notes() -> None:
    block = report.render_table(ROWS, preamble="Model: x.", commands=["dotbridge eval-all"])
    lines = block.splitlines()
    assert lines[0] == "Model: x."
    assert "| scifact | bm25 | BM25 | 300 | 0.676 | 0.500 | – | 0.900 |" in lines
    assert "| dl19 | knn | k-NN [1] | 43 | 0.700 | 0.800 | – | – |" in lines
    assert "[1] subset corpus" in lines
    assert "```bash" in lines and "dotbridge eval-all" in lines
    assert report.column_of("R(rel=2)@100") == "R@100" and report.column_of("P@5") is None


def test_readme_replacement_is_idempotent() -> None:
    block = report.render_table(ROWS)
    readme = "# Title\n\nIntro.\n"
    once = report.replace_between_markers(readme, block)
    assert once.startswith(readme) and once.count(report.EVAL_START) == 1
    assert report.replace_between_markers(once, block) == once

    edited = once + "\n## After\n\nMore.\n"
    newer = report.replace_between_markers(edited, report.render_table(ROWS[:1]))
    assert newer.startswith(readme) and newer.endswith("\n## After\n\nMore.\n")
    assert "dl19" not in newer and newer.count(report.EVAL_END) == 1
    assert report.replace_between_markers(newer, block) == edited


def test_unbalanced_markers_are_refused() -> None:
    with pytest.raises(ValueError, match="no"):
        report.replace_between_markers(f"x {report.EVAL_START} y", "b")
    with pytest.raises(ValueError, match="no"):
        report.replace_between_markers(f"x {report.EVAL_END} y", "b")


def test_update_readme_creates_and_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    report.update_readme(path, "first")
    report.update_readme(path, "second")
    assert path.read_text() == f"{report.EVAL_START}\nsecond\n{report.EVAL_END}\n"


def test_each_engine_rewrites_only_its_own_table(tmp_path: Path) -> None:
    """eval-all on Elasticsearch writes between its own markers; OpenSearch's table stays."""
    path = tmp_path / "README.md"
    report.update_readme(path, "opensearch rows")
    report.update_readme(path, "elasticsearch rows", "elasticsearch")
    report.update_readme(path, "elasticsearch rows, again", "elasticsearch")
    text = path.read_text()
    start, end = report.markers("elasticsearch")
    assert (start, end) == ("<!-- eval-elasticsearch:start -->", "<!-- eval-elasticsearch:end -->")
    assert f"{report.EVAL_START}\nopensearch rows\n{report.EVAL_END}" in text
    assert f"{start}\nelasticsearch rows, again\n{end}" in text
    assert "elasticsearch rows\n" not in text and text.count(start) == 1
    report.update_readme(path, "opensearch rows, again")
    assert f"{start}\nelasticsearch rows, again\n{end}" in path.read_text()
