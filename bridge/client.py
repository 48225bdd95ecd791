"""The one place that knows how to connect to OpenSearch: auth, TLS, retries, timeouts."""

from __future__ import annotations

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout, TransportError

from bridge.config import ConnectionSettings
from bridge.errors import ConnectionFailed, DotbridgeError, error_reason

# 429 and 5xx are worth a retry with back-off; a restarting node answers 503 or drops connections.
RETRY_ON_STATUS = (429, 502, 503, 504)


def connect(settings: ConnectionSettings, *, check: bool = True) -> OpenSearch:
    """Return a client for the cluster; with check, fail clearly when nothing answers."""
    auth = (settings.user, settings.password or "") if settings.user else None
    client = OpenSearch(
        hosts=[settings.url],
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ca_certs=settings.ca_certs,
        ssl_show_warn=settings.verify_certs,
        timeout=settings.timeout,
        max_retries=5,
        retry_on_timeout=True,
        retry_on_status=RETRY_ON_STATUS,
        http_compress=True,
        pool_maxsize=8,  # ingest indexes on one thread while another reads
    )
    if check:
        try:
            client.info()
        except (OSConnectionError, TransportError) as exc:
            raise ConnectionFailed(
                f"No OpenSearch answers at {settings.safe_url} ({error_reason(exc)}): start the "
                "local node with `dotbridge opensearch start` or set OPENSEARCH_URL to your "
                "cluster."
            ) from exc
    return client


def describe_failure(exc: Exception) -> DotbridgeError:
    """The one sentence a user sees for a client-library failure met after connecting."""
    if isinstance(exc, ConnectionTimeout):
        return ConnectionFailed(
            f"The cluster did not answer in time ({error_reason(exc)}): check its health, or "
            "try again."
        )
    if isinstance(exc, OSConnectionError):
        return ConnectionFailed(
            f"The connection to the cluster was lost ({error_reason(exc)}): check that it is "
            "up, then run the command again."
        )
    status = getattr(exc, "status_code", None)
    return DotbridgeError(
        f"The cluster refused a request (HTTP {status}, {error_reason(exc)}): check the index "
        "name and options, then try again."
    )
