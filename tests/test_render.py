"""How results are shown: metrics and status fields (pure functions, no cluster)."""

from __future__ import annotations

from bridge.render import fields, metrics_block


def test_metrics_block_aligns_names_and_rounds_to_four_places():
    text = metrics_block("scifact (300 queries), knn:", {"nDCG@10": 0.64512, "R@1000": 1.0})
    assert text.splitlines() == [
        "scifact (300 queries), knn:",
        "  nDCG@10          0.6451",
        "  R@1000           1.0000",
    ]


def test_fields_align_values_after_the_longest_usual_name():
    text = fields({"url": "http://127.0.0.1:9200", "version": "3.5.0", "plugins": "(none)"})
    assert text.splitlines() == [
        "url:      http://127.0.0.1:9200",
        "version:  3.5.0",
        "plugins:  (none)",
    ]
    assert fields({}) == ""
