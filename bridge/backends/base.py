"""The small interface behind which each search engine keeps what differs: the engine-free
records every backend shares (`Probe`, `Failure`) and the `Backend` base class.

What differs between OpenSearch and Elasticsearch is only this: how a client is made and how its
errors read, the vector field of an index, the k-NN clause, exact scoring of chosen documents,
how a k-NN score maps back to the model's similarity, and the bulk helper. Everything else
(BM25 bodies, fusion, searchers, ingest) is shared and calls the engine's client directly where
both clients take the same call (`search`, `msearch`, `mget`, `indices.*`, `count`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bridge.errors import ConnectionFailed
from mappings import Similarity

if TYPE_CHECKING:
    from bridge.config import ConnectionSettings


Client = Any
"""A cluster client: opensearch-py's `OpenSearch` or elasticsearch-py's `Elasticsearch`. Shared
code calls what both take alike (`search`, `msearch`, `mget`, `count`, `indices.*`) on it, and
asks `backend_of(client)` for the rest."""


@dataclass(frozen=True)
class Probe:
    """What one plain `GET /` said about a cluster: which engine (None: it did not say),
    which version (None: not in the answer), and the HTTP status."""

    engine: str | None
    version: str | None
    status: int


@dataclass(frozen=True)
class Failure:
    """A client library's exception, read into what a user's sentence needs.

    kind: `unauthenticated` (401), `forbidden` (403), `tls`, `connect_timeout`,
    `read_timeout`, `closed` (the connection dropped without an answer), `unreachable`
    (refused, unresolvable), `http` (any other error status) or `other`.
    """

    kind: str
    status: int | None = None
    reason: str = ""  # `type: reason` of the cluster's error (error_reason)
    detail: str = ""  # the low-level cause: TLS text, "Connection refused"


class Backend(ABC):
    """One search engine: its client, its errors, its mappings, k-NN and score conventions."""

    name: ClassVar[str]  # as --backend takes it: "opensearch", "elasticsearch"
    product: ClassVar[str]  # as messages name it: "OpenSearch", "Elasticsearch"
    start_hint: ClassVar[str]  # how to get a local node, for "nothing answers" sentences
    # Headers every answer of the engine carries and its clients check (the gateway's own
    # answers carry them too).
    answer_headers: ClassVar[dict[str, str]] = {}

    # ---- connecting ----------------------------------------------------------------------------

    @abstractmethod
    def client(self, settings: ConnectionSettings) -> Any:
        """A client of this engine for the settings (auth, TLS, timeouts, retries); no request."""

    @abstractmethod
    def check(self, client: Any, settings: ConnectionSettings, probe: Probe | None) -> None:
        """Raise in one sentence when the cluster cannot serve dotbridge (an unsupported
        version); `probe` is what detection saw, when it ran."""

    @abstractmethod
    def version(self, client: Any) -> str:
        """The cluster's version number, e.g. `8.19.21`."""

    @abstractmethod
    def owns(self, thing: Any) -> bool:
        """Whether a client or an exception belongs to this engine's client library."""

    @abstractmethod
    def errors(self) -> tuple[type[BaseException], ...]:
        """The base classes of every failure this engine's client raises."""

    @abstractmethod
    def classify(self, exc: BaseException) -> Failure:
        """The failure behind one of this client's exceptions."""

    @abstractmethod
    def request(
        self,
        client: Any,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """One raw REST request through the client (its auth, TLS and retries); the parsed body."""

    @abstractmethod
    def user(self, client: Any) -> str | None:
        """The user name the client authenticates as (basic auth), for messages."""

    def status(self, exc: BaseException) -> int | None:
        """The HTTP status of a client exception; None when no answer came."""
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) else None

    def is_transient(self, exc: BaseException) -> bool:
        """Worth a retry: 429, 5xx, or no answer (a node restarting)."""
        kind = self.classify(exc)
        if kind.kind in ("connect_timeout", "read_timeout", "closed", "unreachable"):
            return True
        return kind.status in TRANSIENT_STATUS

    # ---- indexes -------------------------------------------------------------------------------

    @abstractmethod
    def index_body(
        self,
        *,
        dimension: int,
        similarity: str | Similarity,
        meta: dict,
        engine: str = "lucene",
        analyzer: str = "english",
        m: int = 16,
        ef_construction: int = 128,
        shards: int = 1,
        replicas: int = 0,
        compression: str = "none",
    ) -> dict:
        """Settings and mappings of a dotbridge index: BM25 text fields plus an HNSW vector;
        `compression` (config.COMPRESSIONS) the copy its graph searches. BadInput in one sentence,
        before the cluster is asked, for a level this engine cannot build."""

    # ---- searches ------------------------------------------------------------------------------

    @abstractmethod
    def knn_query(
        self,
        vector: list[float],
        k: int,
        *,
        vector_field: str,
        ef_search: int | None = None,
        filter: dict | None = None,
        compression: str = "none",
        oversample: float | None = None,
    ) -> dict:
        """The clause that finds the k nearest vectors (approximate; a filter applied inside).

        On a compressed index (`compression` other than `none`) it finds `oversample` x k
        candidates in the compressed graph and returns the best k of them by their exact
        scores from the float32 vectors (default `config.DEFAULT_OVERSAMPLE`)."""

    @abstractmethod
    def exact_query(
        self,
        vector: list[float],
        doc_ids: Sequence[str],
        *,
        similarity: Similarity,
        field: str,
        compression: str = "none",
    ) -> dict:
        """The clause that scores exactly the given documents, and no others, by the exact
        similarity to the vector (in the engine's k-NN score convention), from the float32
        vectors also on a compressed index."""

    @abstractmethod
    def neural_knn(
        self,
        field: str,
        params: dict,
        vector: list[float],
        default_k: int,
        *,
        compression: str = "none",
        oversample: float | None = None,
    ) -> dict:
        """The k-NN clause a neural-search `neural` clause stands for (the gateway); on a
        compressed index with the same oversampling and exact scores as `knn_query`."""

    @abstractmethod
    def to_similarity(self, score: float, similarity: str | Similarity) -> float:
        """The model's similarity (dot product or cosine) from this engine's k-NN score."""

    # ---- bulk ----------------------------------------------------------------------------------

    @abstractmethod
    def streaming_bulk_helper(self) -> Callable[..., Iterator[tuple[bool, dict]]]:
        """The client library's `helpers.streaming_bulk` (same arguments in both libraries)."""

    def streaming_bulk(
        self, client: Any, actions: Iterable[dict], **kwargs: Any
    ) -> Iterator[tuple[bool, dict]]:
        """(ok, item) per action, as the library's `helpers.streaming_bulk` yields them."""
        return self.streaming_bulk_helper()(client, actions, **kwargs)

    def bulk(self, client: Any, actions: Iterable[dict], **kwargs: Any) -> int:
        """Index the actions; the number indexed. Raises on the first refused item."""
        done = 0
        for ok, _ in self.streaming_bulk(client, actions, raise_on_error=True, **kwargs):
            done += bool(ok)
        return done


def candidates_for(k: int, oversample: float | None, limit: int) -> int:
    """How many candidates a compressed index's k-NN re-scores: `oversample` x k (default
    `config.DEFAULT_OVERSAMPLE`), at least k, at most `limit`."""
    from bridge.config import DEFAULT_OVERSAMPLE

    factor = DEFAULT_OVERSAMPLE if oversample is None else oversample
    return max(k, min(limit, math.ceil(k * factor)))


TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class UnsupportedCluster(ConnectionFailed):
    """A cluster dotbridge cannot serve: an engine version it does not support, or another
    engine than --backend names."""


def lucene_to_similarity(score: float, similarity: str | Similarity) -> float:
    """The similarity behind a Lucene k-NN score: a maximum inner product `d` is reported as
    `d + 1` when `d >= 0`, else `1 / (1 - d)`; a cosine as `(1 + cos) / 2`. Both engines'
    scores follow these conventions (measured: see each backend)."""
    sim = Similarity.parse(similarity)
    if sim is Similarity.DOT:
        value = score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    else:
        value = 2.0 * score - 1.0
    return as_float32(value)


def as_float32(value: float) -> float:
    """`value` at the float32 precision the engine scored in, as its shortest decimal: 1.4908006
    - 1 is 0.4908006, not 0.49080060000000003 (float64 arithmetic on a float32 score)."""
    return float(str(np.float32(value)))
