"""Scores: the model's similarity from an engine's k-NN score and back, and exact references."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mappings import Similarity

if TYPE_CHECKING:
    from bridge.backends import Backend


def to_similarity(
    score: float, similarity: str | Similarity, backend: Backend | None = None
) -> float:
    """The model's similarity (dot product or cosine) from a k-NN score of the engine
    (OpenSearch's when none is given); each backend documents the conventions it measured."""
    from bridge.search.bodies import engine

    return engine(backend).to_similarity(score, similarity)


def from_similarity(value: float, similarity: str | Similarity) -> float:
    """The score a k-NN search reports for a similarity value (both engines' convention): the
    inverse of `to_similarity`."""
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        return value + 1.0 if value >= 0.0 else 1.0 / (1.0 - value)
    return (1.0 + value) / 2.0


def similarities(query: np.ndarray, matrix: np.ndarray, similarity: str | Similarity) -> np.ndarray:
    """The similarity of one query vector to each row of a matrix, as the engines define it.

    Computed in float64 from the float32 vectors: the exact value that the engines' float32
    arithmetic approximates.
    """
    query = np.asarray(query, dtype=np.float32).astype(np.float64)
    matrix = np.asarray(matrix, dtype=np.float32).astype(np.float64)
    dots = matrix @ query
    if Similarity.parse(similarity) is Similarity.DOT:
        return dots
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return dots / np.maximum(norms, np.finfo(np.float64).tiny)
