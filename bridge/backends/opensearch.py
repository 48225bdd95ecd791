"""OpenSearch: opensearch-py's client and errors, `knn_vector` mappings, the k-NN plugin's `knn`
query and `knn_score` script, and its score conventions (measured on OpenSearch 3.5)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import urllib3
from opensearchpy import OpenSearch, Urllib3HttpConnection
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConnectionTimeout,
    SSLError,
    TransportError,
)
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.helpers import streaming_bulk
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError

import mappings
from bridge.backends.base import Backend, Failure, Probe, candidates_for, lucene_to_similarity
from bridge.errors import BadInput, error_reason
from mappings import Similarity

if TYPE_CHECKING:
    from bridge.config import ConnectionSettings

# 429 and 5xx are worth a retry with back-off; a restarting node answers 503 or drops connections.
RETRY_ON_STATUS = (429, 502, 503, 504)
MAX_RETRIES = 5
# Several hosts: a node that refused a connection or dropped one is left alone this long (then
# tried once again, the wait doubling while it stays dead): its requests go to the others.
DEAD_TIMEOUT = 30.0

# What a k-NN query takes over from a neural clause as it is.
KNN_PASSED = (
    "boost",
    "_name",
    "min_score",
    "max_distance",
    "method_parameters",
    "rescore",
    "expand_nested_docs",
)
# The k-NN plugin's largest k.
MAX_K = 10_000
# The `knn` query's re-scoring from the float32 vectors on a quantised lucene field: of the k
# hits found (an oversample_factor does not widen them on lucene, measured on 3.5).
EXACT_RESCORE = {"oversample_factor": 1.0}


class _Connection(Urllib3HttpConnection):
    """opensearch-py's connection, with connect timeouts reported as timeouts.

    urllib3 raises ConnectTimeoutError, which opensearch-py reports as a ConnectionError and so
    retries MAX_RETRIES times: six connect timeouts in a row. As a ConnectionTimeout it is not
    retried (retry_on_timeout is off), so a wait never multiplies.
    """

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().perform_request(*args, **kwargs)
        except ConnectionTimeout:
            raise
        except OSConnectionError as exc:
            if is_connect_timeout(exc.info):
                raise ConnectionTimeout("TIMEOUT", str(exc.info), exc.info) from exc
            raise


class _ClusterConnection(_Connection):
    """With several hosts a connect timeout stays a ConnectionError: nothing was sent, so the
    transport marks the host dead and tries the next one instead of failing the request."""

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        return Urllib3HttpConnection.perform_request(self, *args, **kwargs)


def is_connect_timeout(error: object) -> bool:
    # NewConnectionError (refused, unresolvable) subclasses ConnectTimeoutError in urllib3 2.
    return isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError)


class OpenSearchBackend(Backend):
    name = "opensearch"
    product = "OpenSearch"
    start_hint = "start the local node with `dotbridge opensearch start`"

    # ---- connecting ----------------------------------------------------------------------------

    def client(self, settings: ConnectionSettings) -> OpenSearch:
        auth = (settings.user, settings.password or "") if settings.user else None
        hosts = settings.hosts
        return OpenSearch(
            hosts=hosts,
            # No sniffing: nodes publish the addresses they bind, which a client behind NAT, a
            # proxy or a container network often cannot reach, and a sniff needs the
            # cluster:monitor right; the hosts given are the ones used.
            sniff_on_start=False,
            sniff_on_connection_fail=False,
            dead_timeout=DEAD_TIMEOUT,
            http_auth=auth,
            verify_certs=settings.verify_certs,
            ca_certs=settings.ca_certs,
            # Off: urllib3 would warn on every request; bridge.client warns once.
            ssl_show_warn=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.timeout),
            connection_class=_ClusterConnection if len(hosts) > 1 else _Connection,
            max_retries=MAX_RETRIES,
            retry_on_timeout=False,
            retry_on_status=RETRY_ON_STATUS,
            http_compress=True,
            pool_maxsize=8,  # ingest indexes on one thread while another reads
        )

    def check(self, client: OpenSearch, settings: ConnectionSettings, probe: Probe | None) -> None:
        if probe is None or probe.status != 200:
            client.info()  # raises the client's own error (401, 403...) for describe_failure

    def version(self, client: OpenSearch) -> str:
        return str(client.info()["version"]["number"])

    def probe(self, settings: ConnectionSettings) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of `GET /` on the cluster, whatever the status, through
        opensearch-py's connection (the settings' auth, TLS and timeouts): detection's request.
        Failures without an answer raise the client's exceptions."""
        client = self.client(settings)
        try:
            status, headers, body = self._first_answer(client)
        finally:
            client.close()
        raw = body.encode() if isinstance(body, str) else (body or b"")
        return status, {k.lower(): v for k, v in dict(headers).items()}, raw

    @staticmethod
    def _first_answer(client: OpenSearch) -> tuple[int, Any, Any]:
        """`GET /` from the first host that answers, in the order given; the last failure when
        none does (a dead first host is skipped, as the client's pool would)."""
        failure: TransportError | None = None
        for connection in client.transport.connection_pool.connections:
            try:
                return connection.perform_request("GET", "/", ignore=tuple(range(300, 600)))
            except (OSConnectionError, ConnectionTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def owns(self, thing: Any) -> bool:
        return isinstance(thing, (OpenSearch, TransportError))

    def user(self, client: OpenSearch) -> str | None:
        for connection in client.transport.connection_pool.connections:
            auth = getattr(connection, "http_auth", None)
            if isinstance(auth, (tuple, list)) and auth:
                return str(auth[0])
        return None

    def errors(self) -> tuple[type[BaseException], ...]:
        return (TransportError,)

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, AuthenticationException):
            return Failure("unauthenticated", 401, error_reason(exc))
        if isinstance(exc, AuthorizationException):
            return Failure("forbidden", 403, error_reason(exc))
        if isinstance(exc, SSLError):
            return Failure("tls", detail=str(exc.info))
        if isinstance(exc, ConnectionTimeout):
            kind = "connect_timeout" if is_connect_timeout(exc.info) else "read_timeout"
            return Failure(kind)
        if isinstance(exc, OSConnectionError):
            if isinstance(exc.info, ProtocolError):
                return Failure("closed")
            return Failure("unreachable", detail=cause(exc.info))
        if isinstance(exc, TransportError):
            return Failure("http", self.status(exc), error_reason(exc))
        return Failure("other", reason=error_reason(exc))

    def request(
        self,
        client: OpenSearch,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        return client.transport.perform_request(method, path, params=params, body=body)

    # ---- indexes -------------------------------------------------------------------------------

    def index_body(self, **options: Any) -> dict:
        compression = options.get("compression", "none")
        engine = options.get("engine", "lucene")
        if compression != "none" and (engine != "lucene" or compression != "4x"):
            where = "" if engine == "lucene" else f" with --engine lucene (not {engine})"
            raise BadInput(
                f"OpenSearch cannot build --compression {compression} here: its lucene engine "
                f"builds 4x only (7-bit scalar quantisation): use --compression 4x{where}, or "
                "Elasticsearch for 8x and 32x."
            )
        return mappings.index_body(**options)

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
        """The k-NN plugin's `knn` clause (lucene HNSW; a filter is applied inside).

        On a compressed (sq) index: k = oversample x k candidates and the `rescore` option,
        which re-scores exactly the k it found from the float32 vectors (measured on 3.5: the
        scores equal the `knn_score` script's); the body's `size` keeps the best k."""
        if compression != "none":
            k = candidates_for(k, oversample, MAX_K)
        knn: dict[str, Any] = {"vector": vector, "k": k}
        if filter:
            knn["filter"] = filter
        if ef_search is not None:
            knn["method_parameters"] = {"ef_search": ef_search}
        if compression != "none":
            knn["rescore"] = EXACT_RESCORE
        return {"knn": {vector_field: knn}}

    def exact_query(
        self,
        vector: list[float],
        doc_ids: Sequence[str],
        *,
        similarity: Similarity,
        field: str,
        compression: str = "none",
    ) -> dict:
        """The k-NN plugin's `knn_score` script over exactly the given ids.

        Unlike OpenSearch's `rescore`, which re-scores a window per shard, this scores the given
        set and no more. It reads the float32 vectors also on an sq field (measured: exact to
        1.2e-7), so `compression` changes nothing.
        """
        script = {
            "source": "knn_score",
            "lang": "knn",
            "params": {
                "field": field,
                "query_value": vector,
                "space_type": Similarity.parse(similarity).space_type,
            },
        }
        return {"script_score": {"query": {"ids": {"values": list(doc_ids)}}, "script": script}}

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
        """k, or a radial min_score / max_distance, and the k-NN query's own options as given;
        on a compressed index a k search is widened and re-scored exactly as `knn_query`'s."""
        filter = params.get("filter")
        radial = "min_score" in params or "max_distance" in params
        if radial and "k" not in params:
            knn: dict[str, Any] = {"vector": vector}
            if filter:
                knn["filter"] = filter
            clause = {"knn": {field: knn}}
        else:
            k = params.get("k", default_k)
            clause = self.knn_query(
                vector,
                k,
                vector_field=field,
                filter=filter,
                compression=compression,
                oversample=oversample,
            )
        clause["knn"][field].update({key: params[key] for key in KNN_PASSED if key in params})
        return clause

    def to_similarity(self, score: float, similarity: str | Similarity) -> float:
        """Measured on OpenSearch 3.5 (lucene engine), the `knn` query (approximate or filtered
        exact) and the `knn_score` script agree: innerproduct reports `d + 1` for a dot product
        `d > 0`, else `1 / (1 - d)`; cosinesimil reports `(1 + cos) / 2`, not the `1 + cos` of
        older script docs. These are Lucene's conventions."""
        return lucene_to_similarity(score, similarity)

    # ---- bulk ----------------------------------------------------------------------------------

    def streaming_bulk_helper(self) -> Callable[..., Iterator[tuple[bool, dict]]]:
        return streaming_bulk


def cause(error: object) -> str:
    """'Connection refused' from urllib3's 'HTTPConnection(...): Failed to ...: [Errno 111] ...'."""
    import re

    text = " ".join(str(error).split())
    if isinstance(error, NewConnectionError):
        text = re.sub(r"^\[Errno -?\d+\] ", "", text.rsplit(": ", 1)[-1])
    return text[:200] or type(error).__name__


OPENSEARCH = OpenSearchBackend()
