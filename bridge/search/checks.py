"""Checks a searcher makes before it searches: the index fits the encoder, queries and sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.backends import Client
from bridge.config import MAX_OVERSAMPLE, MAX_RESULTS
from bridge.errors import BadInput
from bridge.indexes import IndexSpec, check_compatible, missing_index, read_spec
from bridge.search.bodies import check_query

if TYPE_CHECKING:
    from bridge.encoder import Encoder


def check_index(client: Client, index: str, encoder: Encoder) -> IndexSpec:
    """The index's spec, after checking that the encoder is the one its vectors were made with."""
    stored = read_spec(client, index)
    if stored is None:
        raise missing_index(index)
    check_compatible(index, stored, IndexSpec.of(encoder))
    return stored


def check_queries(queries: Sequence[str]) -> None:
    if isinstance(queries, str):
        raise TypeError("queries must be a sequence of strings, not a single string")
    for number, query in enumerate(queries, start=1):
        try:
            check_query(query)
        except BadInput as exc:
            if len(queries) == 1:
                raise
            raise BadInput(f"Query {number} of {len(queries)}: {exc.message}") from None


def check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_RESULTS}, got {value!r}")


def check_oversample(value: float | None) -> None:
    """None (the default) or a factor from 1 to MAX_OVERSAMPLE."""
    if value is not None and not 1.0 <= value <= MAX_OVERSAMPLE:
        raise BadInput(
            f"--oversample must be from 1 to {MAX_OVERSAMPLE:g} (candidates per hit re-scored "
            f"exactly on a compressed index), got {value!r}."
        )
