"""Elasticsearch 8.15+ and 9: elasticsearch-py's client and errors, `dense_vector` mappings, the
`knn` query, exact scoring by a `knn` query filtered to the chosen ids, and its score
conventions (measured on 8.19.21 by benchmarks/es_scores.py).

Imported only when an Elasticsearch cluster is used: elasticsearch-py is the optional
`elasticsearch` extra (`pip install 'dotbridge[elasticsearch]'`), in its 8.x line, which talks
to 8.x and 9.x servers (9.x clients are refused by 8.x servers).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import urllib3
from elastic_transport import ConnectionError as ESConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elastic_transport import TransportError as ESTransportError
from elasticsearch import ApiError, AuthenticationException, AuthorizationException, Elasticsearch
from elasticsearch.helpers import streaming_bulk
from urllib3.exceptions import ConnectTimeoutError, ProtocolError

import mappings
from bridge.backends.base import (
    Backend,
    Failure,
    Probe,
    UnsupportedCluster,
    candidates_for,
    lucene_to_similarity,
)
from bridge.backends.opensearch import DEAD_TIMEOUT, MAX_RETRIES, RETRY_ON_STATUS, cause
from bridge.errors import BadInput, ConnectionFailed, error_reason
from mappings import VECTOR_FIELD, Similarity

if TYPE_CHECKING:
    from bridge.config import ConnectionSettings

log = logging.getLogger(__name__)

# The `knn` query takes `k` from 8.15 on (8.12 to 8.14 had the query without it); 9.x keeps it.
MIN_VERSION = (8, 15)
MAX_MAJOR = 9
# Elasticsearch refuses a `knn` search with more candidates than this (HTTP 400).
MAX_NUM_CANDIDATES = 10_000
# Candidates per shard of an approximate search when none are asked for: the 100 of
# OpenSearch's ef_search default, so that both engines search alike by default.
DEFAULT_NUM_CANDIDATES = 100

# dotbridge's similarity -> dense_vector's. max_inner_product takes vectors of any length (the
# raw dot product); dot_product would demand unit vectors, and cosine normalises itself.
SIMILARITIES = {Similarity.DOT: "max_inner_product", Similarity.COSINE: "cosine"}
# dense_vector's index type per --compression; each keeps the float32 vectors beside its copy.
INDEX_TYPES = {"none": "hnsw", "4x": "int8_hnsw", "8x": "int4_hnsw", "32x": "bbq_hnsw"}
# What the `knn` query takes over from a neural clause as it is.
KNN_PASSED = ("boost", "_name")
# Neural options Elasticsearch's `knn` query has no counterpart for.
NOT_ON_ELASTICSEARCH = ("min_score", "max_distance", "rescore", "expand_nested_docs")


class ElasticsearchBackend(Backend):
    name = "elasticsearch"
    product = "Elasticsearch"
    start_hint = (
        "start the local node with `dotbridge elasticsearch start` (then --url "
        "http://127.0.0.1:9201)"
    )
    # elasticsearch-py refuses a successful answer without it (UnsupportedProductError).
    answer_headers = {"X-Elastic-Product": "Elasticsearch"}

    # ---- connecting ----------------------------------------------------------------------------

    def client(self, settings: ConnectionSettings) -> Elasticsearch:
        auth = (settings.user, settings.password or "") if settings.user else None
        client = Elasticsearch(
            hosts=settings.hosts,
            # As with OpenSearch: no sniffing (published addresses may be unreachable from
            # here); a dead node waits out a back-off of up to DEAD_TIMEOUT before a new try.
            sniff_on_start=False,
            sniff_on_node_failure=False,
            max_dead_node_backoff=DEAD_TIMEOUT,
            basic_auth=auth,
            verify_certs=settings.verify_certs,
            ca_certs=settings.ca_certs,
            ssl_show_warn=False,  # bridge.client warns once
            max_retries=MAX_RETRIES,
            retry_on_timeout=False,
            retry_on_status=RETRY_ON_STATUS,
            http_compress=True,
            connections_per_node=8,  # ingest indexes on one thread while another reads
        )
        # elastic-transport has one total timeout per request; dotbridge waits `connect_timeout`
        # for a connection and `timeout` for the answer, as with OpenSearch.
        timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.timeout)
        for node in client.transport.node_pool.all():
            pool = getattr(node, "pool", None)
            if pool is not None:
                pool.timeout = timeout
        return client

    def check(
        self, client: Elasticsearch, settings: ConnectionSettings, probe: Probe | None
    ) -> None:
        version = probe.version if probe is not None and probe.version else None
        if version is None:
            version = self.version(client)
        check_version(version, settings.safe_url)

    def version(self, client: Elasticsearch) -> str:
        """The lowest version of the cluster's nodes. Not `info()`: `GET /` is not served by
        every distribution (the integration-test zip answers 405)."""
        nodes = client.nodes.info(node_id="_all", metric="_none", filter_path="nodes.*.version")
        versions = [n["version"] for n in (nodes.get("nodes") or {}).values()]
        if not versions:
            raise ConnectionFailed("The Elasticsearch cluster reported no nodes: check its health.")
        return min(versions, key=version_tuple)

    def owns(self, thing: Any) -> bool:
        return isinstance(thing, (Elasticsearch, ApiError, ESTransportError))

    def user(self, client: Elasticsearch) -> str | None:
        # elasticsearch-py keeps basic auth only as the Authorization header it sends.
        header = dict(client._headers).get("authorization", "")  # noqa: SLF001
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return None
        try:
            return base64.b64decode(token).decode().split(":", 1)[0] or None
        except ValueError:
            return None

    def errors(self) -> tuple[type[BaseException], ...]:
        return (ApiError, ESTransportError)

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, AuthenticationException):
            return Failure("unauthenticated", 401, error_reason(exc))
        if isinstance(exc, AuthorizationException):
            return Failure("forbidden", 403, error_reason(exc))
        if isinstance(exc, ApiError):
            return Failure("http", self.status(exc), error_reason(exc))
        cause_ = _cause(exc)
        if isinstance(exc, TlsError):
            return Failure("tls", detail=str(cause_ or exc))
        if isinstance(exc, ConnectionTimeout):
            connect = isinstance(cause_, ConnectTimeoutError)
            return Failure("connect_timeout" if connect else "read_timeout")
        if isinstance(exc, ESConnectionError):
            if isinstance(cause_, ProtocolError):
                return Failure("closed")
            return Failure("unreachable", detail=cause(cause_ or exc))
        return Failure("other", reason=error_reason(exc))

    def request(
        self,
        client: Elasticsearch,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        params = {
            k: str(v).lower() if isinstance(v, bool) else v for k, v in (params or {}).items()
        }
        return client.perform_request(method, path, params=params, headers=headers, body=body)

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, TlsError):
            return False
        return super().is_transient(exc)

    # ---- indexes -------------------------------------------------------------------------------

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
        """OpenSearch's index body (the same text fields, `_meta` and settings) with the vector
        as a `dense_vector`: HNSW without quantisation (`index_options.type: hnsw`, said
        explicitly: at these dimensions a dense_vector is int8_hnsw by default) or, by
        `compression`, int8_hnsw / int4_hnsw / bbq_hnsw (4x / 8x / 32x), which keep the float32
        vectors too; `max_inner_product` for dot-product models, `cosine` for normalised ones."""
        if engine != "lucene":
            raise BadInput(
                f"--engine {engine} is an OpenSearch k-NN engine; Elasticsearch builds its own "
                "HNSW graphs (Lucene's): leave --engine out."
            )
        body = mappings.index_body(
            dimension=dimension,
            similarity=similarity,
            meta=meta,
            engine=engine,
            analyzer=analyzer,
            m=m,
            ef_construction=ef_construction,
            shards=shards,
            replicas=replicas,
        )
        body["settings"]["index"].pop("knn", None)  # the k-NN plugin's switch
        if compression not in INDEX_TYPES:
            raise BadInput(
                f"Elasticsearch has no --compression {compression}: it builds "
                f"{', '.join(INDEX_TYPES)}."
            )
        index_type = INDEX_TYPES[compression]
        body["mappings"]["properties"][VECTOR_FIELD] = {
            "type": "dense_vector",
            "dims": dimension,
            "index": True,
            "similarity": SIMILARITIES[Similarity.parse(similarity)],
            "index_options": {"type": index_type, "m": m, "ef_construction": ef_construction},
        }
        return body

    # ---- searches ------------------------------------------------------------------------------

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
        """The `knn` query: the k nearest of `num_candidates` per shard (ef_search's role).

        On a compressed index, `rescore_vector` re-scores oversample x k candidates exactly from
        the float32 vectors and keeps the best k (num_candidates raised to at least that many)."""
        candidates = num_candidates(k, ef_search)
        factor = None
        if compression != "none":
            wide = candidates_for(k, oversample, MAX_NUM_CANDIDATES)
            candidates = max(candidates, wide)
            factor = wide / k
        knn: dict[str, Any] = {
            "field": vector_field,
            "query_vector": vector,
            "k": k,
            "num_candidates": candidates,
        }
        if filter:
            knn["filter"] = filter
        if factor is not None:
            knn["rescore_vector"] = {"oversample": factor}
        return {"knn": knn}

    def exact_query(
        self,
        vector: list[float],
        doc_ids: Sequence[str],
        *,
        similarity: Similarity,
        field: str,
        compression: str = "none",
    ) -> dict:
        """A `knn` query restricted to the ids, with k = num_candidates = their number.

        No script (the default distribution's painless is missing from some): when a filter
        admits no more documents than k, Lucene scores them exactly instead of walking the
        graph, so this returns every given document with its exact similarity (measured on
        8.19: N = 10 to 1,000 of 2,000, float32 rounding only). `similarity` is fixed by the
        field's mapping. On a quantised field those scores are the quantised ones (int8 off by
        up to 0.016, bbq 0.115, measured on 8.19): `rescore_vector` with oversample 1 re-scores
        them from the float32 vectors, exact again on every type.
        """
        n = len(doc_ids)
        if not 1 <= n <= MAX_NUM_CANDIDATES:
            raise ValueError(f"exact scoring takes 1 to {MAX_NUM_CANDIDATES} ids, got {n}")
        return {
            "knn": {
                "field": field,
                "query_vector": vector,
                "k": n,
                "num_candidates": n,
                "filter": {"ids": {"values": list(doc_ids)}},
                **({"rescore_vector": {"oversample": 1.0}} if compression != "none" else {}),
            }
        }

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
        """k (and method_parameters.ef_search as num_candidates), filter, boost and _name."""
        refused = [key for key in NOT_ON_ELASTICSEARCH if key in params]
        if refused:
            raise BadInput(
                f"The neural clause on {field!r} uses {', '.join(refused)}, which Elasticsearch's "
                "knn query has no counterpart for: give k instead."
            )
        ef = (params.get("method_parameters") or {}).get("ef_search")
        clause = self.knn_query(
            vector,
            params.get("k", default_k),
            vector_field=field,
            ef_search=ef,
            filter=params.get("filter"),
            compression=compression,
            oversample=oversample,
        )
        clause["knn"].update({key: params[key] for key in KNN_PASSED if key in params})
        return clause

    def to_similarity(self, score: float, similarity: str | Similarity) -> float:
        """Measured on 8.19.21 (benchmarks/es_scores.py), the `knn` query and the top-level `knn`
        search agree: max_inner_product reports `d + 1` for a dot product `d >= 0`, else
        `1 / (1 - d)`; cosine reports `(1 + cos) / 2`. These are OpenSearch's innerproduct and
        cosinesimil conventions: Lucene's, which both engines report."""
        return lucene_to_similarity(score, similarity)

    # ---- bulk ----------------------------------------------------------------------------------

    def streaming_bulk_helper(self) -> Callable[..., Iterator[tuple[bool, dict]]]:
        return streaming_bulk


def num_candidates(k: int, ef_search: int | None) -> int:
    """Candidates per shard: at least k, ef_search when given, else DEFAULT_NUM_CANDIDATES."""
    wanted = ef_search if ef_search is not None else DEFAULT_NUM_CANDIDATES
    return min(max(k, wanted), MAX_NUM_CANDIDATES)


def version_tuple(version: str) -> tuple[int, ...]:
    """(8, 19, 21) from `8.19.21` (or `9.1.0-SNAPSHOT`); () when it has no leading number."""
    parts = re.findall(r"\d+", version.split("-")[0])
    return tuple(int(p) for p in parts[:3])


def check_version(version: str, url: str) -> None:
    """Refuse, in one sentence, an Elasticsearch that cannot serve dotbridge's searches."""
    numbers = version_tuple(version)
    supported = f"{MIN_VERSION[0]}.{MIN_VERSION[1]} to {MAX_MAJOR}.x"
    if not numbers or numbers[:2] < MIN_VERSION:
        raise UnsupportedCluster(
            f"Elasticsearch {version} at {url} is too old for dotbridge, which needs "
            f"Elasticsearch {supported} (the knn query with k, dense_vector with "
            "max_inner_product): upgrade the cluster, or use OpenSearch."
        )
    if numbers[0] > MAX_MAJOR:
        raise UnsupportedCluster(
            f"Elasticsearch {version} at {url} is newer than dotbridge knows (it serves "
            f"Elasticsearch {supported}): use a cluster of those versions, or upgrade dotbridge."
        )


def _cause(exc: BaseException) -> BaseException | None:
    """The urllib3 error an elastic-transport error wraps (its `errors`), if any."""
    errors = getattr(exc, "errors", None) or ()
    for error in errors:
        if isinstance(error, BaseException):
            return error
    return exc.__cause__


ELASTICSEARCH = ElasticsearchBackend()
