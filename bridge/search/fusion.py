"""Fusion of ranked lists: plain functions of (doc id, score) runs, no I/O.

Hybrid search composes them with two searchers, as pyserini keeps `fusion/` apart from its
hybrid searcher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def rrf(runs: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the runs, rank counted from 1.

    Best first; equal scores by doc id descending. Each run is read as its distinct docs in
    order (a repeat counts once, at its first place).
    """
    if k < 0:
        raise ValueError(f"rrf k must be 0 or more, got {k}")
    scores: dict[str, float] = {}
    for run in runs:
        for rank, doc_id in enumerate(dict.fromkeys(run), start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return ranked(scores)


def linear(
    sparse: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    weight: float = 0.5,
) -> list[tuple[str, float]]:
    """`weight * dense + (1 - weight) * sparse` of min-max normalised scores; missing counts 0.

    A list whose scores are all equal normalises to 1 for each of its docs.
    """
    check_weight(weight)
    fused: dict[str, float] = {}
    for run, w in ((sparse, 1.0 - weight), (dense, weight)):
        for doc_id, value in min_max(run).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + w * value
    return ranked(fused)


def min_max(run: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Each doc's score scaled to [0, 1] within the run (its first occurrence counts)."""
    scores: dict[str, float] = {}
    for doc_id, score in run:
        scores.setdefault(doc_id, score)
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {doc_id: (s - low) / (high - low) for doc_id, s in scores.items()}


def ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    """Best first; equal scores by doc id descending, as trec_eval reads a run."""
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def check_weight(weight: float) -> None:
    if not (isinstance(weight, int | float) and math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise ValueError(f"weight must be between 0 and 1, got {weight!r}")
