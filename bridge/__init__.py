"""dotbridge: a neural bi-encoder in front of OpenSearch or Elasticsearch.

    from bridge import Encoder, ConnectionSettings, connect, make_searcher

The names load lazily, so the CLI starts without importing torch until it needs a model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Encoder": "bridge.encoder",
    "ModelLoadError": "bridge.encoder",
    "SEED_MODEL": "bridge.config",
    "ConnectionSettings": "bridge.config",
    "connect": "bridge.client",
    "IndexSpec": "bridge.indexes",
    "Hit": "bridge.search",
    "Searcher": "bridge.search",
    "Bm25": "bridge.search",
    "Rerank": "bridge.search",
    "Knn": "bridge.search",
    "Hybrid": "bridge.search",
    "make_searcher": "bridge.search",
    "rrf": "bridge.search",
    "LocalNode": "bridge.nodes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
