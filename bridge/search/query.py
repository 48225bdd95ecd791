"""One search as the `search` command runs it: the mode's searcher on an index, with the model
that built the index (none for bm25), and the query checked before a model is loaded."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.search.bodies import check_query
from bridge.search.searchers import Hit, Searcher, make_searcher

if TYPE_CHECKING:
    from bridge.backends import Client
    from bridge.config import ModelSettings


def open_searcher(
    client: Client, index: str, mode: str, model: ModelSettings, **options: Any
) -> Searcher:
    """The searcher for `mode` on `index`; dense modes load the model the index records (or
    `model.model`, checked against it), bm25 loads none."""
    from bridge.indexes import encoder_for_index

    encoder = None if mode == "bm25" else encoder_for_index(client, index, model)
    return make_searcher(mode, client, index, encoder=encoder, **options)


def search_index(
    connect: Callable[[], Client],
    index: str,
    query: str,
    *,
    mode: str,
    k: int,
    model: ModelSettings,
    search_options: Mapping[str, Any] | None = None,
) -> list[Hit]:
    """What `dotbridge search` does: the top `k` hits for `query`; a bad query is refused before
    the cluster is reached or a model loaded."""
    check_query(query)
    searcher = open_searcher(connect(), index, mode, model, **(search_options or {}))
    return searcher.search(query, k=k)
