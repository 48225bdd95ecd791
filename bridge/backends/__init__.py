"""Search engines behind one small interface: OpenSearch and Elasticsearch.

`base.Backend` lists what differs between engines (client and errors, index body, k-NN and
exact-scoring clauses, score conventions, bulk helper); `opensearch` and `elasticsearch` fill it
in; `detect` tells which engine a URL serves. Shared code asks `backend_of(client)` for the
engine of the client it was given, and `backend_of(exc)` for the engine of an error.

The Elasticsearch backend (and elasticsearch-py, an optional extra) is imported only when an
Elasticsearch client, error or name turns up.
"""

from __future__ import annotations

import sys
from typing import Any

from bridge.backends.base import (
    TRANSIENT_STATUS,
    Backend,
    Client,
    Failure,
    Probe,
    UnsupportedCluster,
)
from bridge.config import BACKENDS
from bridge.errors import BadInput

ENGINES = BACKENDS[1:]

__all__ = [
    "BACKENDS",
    "ENGINES",
    "TRANSIENT_STATUS",
    "Backend",
    "Client",
    "Failure",
    "Probe",
    "UnsupportedCluster",
    "backend_named",
    "backend_of",
    "client_errors",
    "is_not_found",
    "is_transient",
    "owner",
    "status_of",
]


def backend_named(name: str) -> Backend:
    """The backend of an engine name (`opensearch`, `elasticsearch`)."""
    if name == "opensearch":
        from bridge.backends.opensearch import OPENSEARCH

        return OPENSEARCH
    if name == "elasticsearch":
        try:
            from bridge.backends.elasticsearch import ELASTICSEARCH
        except ImportError as exc:
            raise BadInput(
                f"Elasticsearch needs its Python client, which is missing ({exc.name}): "
                "install it with `pip install 'dotbridge[elasticsearch]'`."
            ) from None
        return ELASTICSEARCH
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(ENGINES)}")


def _loaded() -> list[Backend]:
    """The backends whose client library is loaded (only those can own a client or error)."""
    found = [backend_named("opensearch")]
    if "elasticsearch" in sys.modules:
        found.append(backend_named("elasticsearch"))
    return found


def backend_of(thing: Any) -> Backend:
    """The backend of a client, or of an exception one raised; ValueError for anything else."""
    for backend in _loaded():
        if backend.owns(thing):
            return backend
    raise ValueError(f"{type(thing).__name__} is neither an OpenSearch nor an Elasticsearch client")


def owner(exc: BaseException) -> Backend | None:
    """The backend whose client library raised `exc`; None for any other exception."""
    for backend in _loaded():
        if backend.owns(exc):
            return backend
    return None


def client_errors() -> tuple[type[BaseException], ...]:
    """Every loaded client library's failure classes, for `except client_errors():`."""
    return tuple(error for backend in _loaded() for error in backend.errors())


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a client library's error; None when no answer came (or not ours)."""
    backend = owner(exc)
    return backend.status(exc) if backend is not None else None


def is_not_found(exc: BaseException) -> bool:
    """Whether a client library's error is a 404 (a missing index or document)."""
    return status_of(exc) == 404


def is_transient(exc: BaseException) -> bool:
    """Whether a client library's error is worth a retry (429, 5xx, no answer)."""
    backend = owner(exc)
    return backend is not None and backend.is_transient(exc)
