"""Scores: the model's similarity from an OpenSearch k-NN score and back, and exact references."""

from __future__ import annotations

import numpy as np

from mappings import Similarity


def to_similarity(score: float, similarity: str | Similarity) -> float:
    """The model's similarity (dot product or cosine) from an OpenSearch k-NN score.

    Measured on OpenSearch 3.5 (lucene engine), the `knn` query (approximate or filtered exact)
    and the `knn_score` script agree: innerproduct reports `d + 1` for a dot product `d > 0`, else
    `1 / (1 - d)`; cosinesimil reports `(1 + cos) / 2`, not the `1 + cos` of older script docs.
    """
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    return 2.0 * score - 1.0


def from_similarity(value: float, similarity: str | Similarity) -> float:
    """The score OpenSearch reports for a similarity value: the inverse of `to_similarity`."""
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        return value + 1.0 if value >= 0.0 else 1.0 / (1.0 - value)
    return (1.0 + value) / 2.0


def similarities(query: np.ndarray, matrix: np.ndarray, similarity: str | Similarity) -> np.ndarray:
    """The similarity of one query vector to each row of a matrix, as OpenSearch defines it.

    Computed in float64 from the float32 vectors: the exact value that OpenSearch's float32
    arithmetic approximates.
    """
    query = np.asarray(query, dtype=np.float32).astype(np.float64)
    matrix = np.asarray(matrix, dtype=np.float32).astype(np.float64)
    dots = matrix @ query
    if Similarity.parse(similarity) is Similarity.DOT:
        return dots
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return dots / np.maximum(norms, np.finfo(np.float64).tiny)
