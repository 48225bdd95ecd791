"""The one place that knows how to connect to OpenSearch: auth, TLS, retries, timeouts.

It also turns every client failure into the one sentence a user sees (`describe_failure`), and
checks before a write run that the user may write (`check_can_write`).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from typing import Any

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
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError

from bridge.config import ConnectionSettings
from bridge.errors import ConnectionFailed, DotbridgeError, error_reason

log = logging.getLogger(__name__)

# 429 and 5xx are worth a retry with back-off; a restarting node answers 503 or drops connections.
RETRY_ON_STATUS = (429, 502, 503, 504)
MAX_RETRIES = 5


class AuthenticationFailed(ConnectionFailed):
    """The cluster refused the credentials (HTTP 401)."""


class PermissionDenied(DotbridgeError):
    """The user may not do what was asked (HTTP 403)."""


class TlsFailed(ConnectionFailed):
    """TLS with the cluster failed: an untrusted certificate, or no TLS where it was expected."""


class ClusterTimeout(ConnectionFailed):
    """No connection, or no answer, within the configured time."""


class RequestFailed(DotbridgeError):
    """The cluster answered a request with an error."""


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
            if _is_connect_timeout(exc.info):
                raise ConnectionTimeout("TIMEOUT", str(exc.info), exc.info) from exc
            raise


def _is_connect_timeout(error: object) -> bool:
    # NewConnectionError (refused, unresolvable) subclasses ConnectTimeoutError in urllib3 2.
    return isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError)


_warned_insecure: set[str] = set()
_warn_lock = threading.Lock()


def connect(settings: ConnectionSettings, *, check: bool = True) -> OpenSearch:
    """Return a client for the cluster; with check, fail in one sentence when it cannot serve."""
    auth = (settings.user, settings.password or "") if settings.user else None
    if not settings.verify_certs and settings.uses_tls:
        _warn_insecure(settings)
    client = OpenSearch(
        hosts=[settings.url],
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ca_certs=settings.ca_certs,
        # Off: urllib3 would warn on every request; _warn_insecure says it once.
        ssl_show_warn=False,
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.timeout),
        connection_class=_Connection,
        max_retries=MAX_RETRIES,
        retry_on_timeout=False,
        retry_on_status=RETRY_ON_STATUS,
        http_compress=True,
        pool_maxsize=8,  # ingest indexes on one thread while another reads
    )
    if check:
        try:
            client.info()
        except TransportError as exc:
            raise describe_failure(exc, settings) from exc
    return client


def _warn_insecure(settings: ConnectionSettings) -> None:
    with _warn_lock:
        if settings.safe_url in _warned_insecure:
            return
        _warned_insecure.add(settings.safe_url)
    log.warning(
        "TLS certificates of %s are not verified (--insecure): anyone on the network path can "
        "read and change this connection.",
        settings.safe_url,
    )


def describe_failure(
    exc: BaseException, settings: ConnectionSettings | None = None
) -> DotbridgeError:
    """The one sentence a user sees for a client failure (TLS, 401, 403, timeouts, HTTP errors).

    Takes any opensearch-py exception (a DotbridgeError is returned as it is). With the settings
    in use, the message names the URL, the user and the timeouts; never the password.
    """
    if isinstance(exc, DotbridgeError):
        return exc
    error = _describe(exc, settings or _UNKNOWN, known=settings is not None)
    if error.message.startswith(_UNKNOWN.url):  # a sentence starts with a capital
        error.message = error.message[:1].upper() + error.message[1:]
    password = settings.password if settings else None
    if password and password in error.message:  # never, but never print it
        error.message = error.message.replace(password, "***")
    return error


# Stands in for the settings when a caller has none: "the cluster", timeouts not named.
_UNKNOWN = ConnectionSettings(url="the cluster")


def _describe(exc: BaseException, settings: ConnectionSettings, *, known: bool) -> DotbridgeError:
    url = settings.safe_url
    user = settings.user
    if isinstance(exc, AuthenticationException):
        if user:
            return AuthenticationFailed(
                f"OpenSearch at {url} refused the credentials of user {user!r} (HTTP 401): "
                "check --user (OPENSEARCH_USER) and the password in OPENSEARCH_PASSWORD."
            )
        return AuthenticationFailed(
            f"OpenSearch at {url} requires a user (HTTP 401): pass --user (or set "
            "OPENSEARCH_USER) and set OPENSEARCH_PASSWORD."
        )
    if isinstance(exc, AuthorizationException):
        who = f"User {user!r}" if user else ("A request without a user" if known else "The user")
        return PermissionDenied(
            f"{who} may not do this on {url} ({error_reason(exc)}): use a user with that "
            "permission or ask the cluster's administrator for it."
        )
    if isinstance(exc, SSLError):
        return _describe_tls(exc, settings)
    if isinstance(exc, ConnectionTimeout):
        if _is_connect_timeout(exc.info):
            within = f"within {settings.connect_timeout:g} s" if known else "in time"
            return ClusterTimeout(
                f"Nothing at {url} accepted a connection {within}: check the URL and the "
                "network, or raise --connect-timeout."
            )
        within = f"within {settings.timeout:g} s" if known else "in time"
        return ClusterTimeout(
            f"{url} accepted the connection but sent no answer {within}: check that it is a "
            "healthy OpenSearch node, or raise --timeout."
        )
    if isinstance(exc, OSConnectionError):
        if isinstance(exc.info, ProtocolError):
            plain = known and not settings.uses_tls
            hint = "if the cluster uses TLS, use an https:// URL, or " if plain else ""
            return ConnectionFailed(
                f"{url} closed the connection without an answer: {hint}check that an "
                "OpenSearch node listens there."
            )
        return ConnectionFailed(
            f"No OpenSearch answers at {url} ({_cause(exc)}): start the local node with "
            "`dotbridge opensearch start` or set OPENSEARCH_URL to your cluster."
        )
    if isinstance(exc, TransportError):
        status = exc.status_code
        if isinstance(status, int) and (status == 429 or status >= 500):
            return RequestFailed(
                f"OpenSearch at {url} could not serve the request ({error_reason(exc)}, HTTP "
                f"{status}) after {MAX_RETRIES} retries: check the cluster's health and try again."
            )
        return RequestFailed(
            f"OpenSearch at {url} refused the request (HTTP {status}, {error_reason(exc)}): "
            "check the index name and the options given, then try again."
        )
    return RequestFailed(
        f"The request to {url} failed ({error_reason(exc)}): check that the cluster is up, then "
        "try again."
    )


def _describe_tls(exc: SSLError, settings: ConnectionSettings) -> DotbridgeError:
    url = settings.safe_url
    text = str(exc.info)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = _ssl_detail(text)
        if settings.ca_certs:
            return TlsFailed(
                f"The certificate of {url} is not trusted by the CA in {settings.ca_certs} "
                f"({detail}): pass the CA that signed the cluster's certificate with --ca-certs "
                "(or OPENSEARCH_CA_CERTS)."
            )
        return TlsFailed(
            f"The certificate of {url} is not trusted ({detail}): pass the CA certificate of "
            "the cluster with --ca-certs (or OPENSEARCH_CA_CERTS)."
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return TlsFailed(
            f"{url} does not speak TLS: use an http:// URL if the cluster really runs without it."
        )
    return TlsFailed(
        f"TLS with {url} failed ({_ssl_detail(text)}): check the URL and --ca-certs "
        "(OPENSEARCH_CA_CERTS)."
    )


def _ssl_detail(text: str) -> str:
    """'certificate verify failed: self-signed certificate in certificate chain' from urllib3's."""
    marker = "certificate verify failed"
    if marker in text:
        tail = text[text.index(marker) :]
        return tail.split(" (_ssl")[0].rstrip(")'\"")
    return " ".join(text.split())[:200]


def _cause(exc: OSConnectionError) -> str:
    """'Connection refused' from urllib3's 'HTTPConnection(...): Failed to ...: [Errno 111] ...'."""
    text = " ".join(str(exc.info).split())
    if isinstance(exc.info, NewConnectionError):
        text = re.sub(r"^\[Errno -?\d+\] ", "", text.rsplit(": ", 1)[-1])
    return text[:200] or type(exc.info).__name__


# ---- may this user write? ----------------------------------------------------------------------

# A write run (ingest) creates the index or changes its settings and mapping, writes documents
# and refreshes. Each probe below needs the same privilege as one of those steps, and is built
# to be refused by the cluster *after* the security plugin has let it through, so that nothing
# is ever created, written or changed: a 403 means "not allowed", the expected 4xx "allowed".
_NEVER = 2**62  # a primary term no index reaches: a conditional write that can never apply


def check_can_write(client: OpenSearch, index: str) -> None:
    """Raise PermissionDenied, before anything is written, if this user may not fill `index`."""
    settings_probe = _probe(
        client,
        "change the settings of",
        index,
        allowed=(400, 404),
        method="PUT",
        path=f"/{index}/_settings",
        body={"index": {"refresh_interval": "not-a-time"}},
    )
    if settings_probe == 404:  # no such index yet: the run would create it
        _probe(
            client,
            "create",
            index,
            allowed=(400,),
            method="PUT",
            path=f"/{index}",
            body={"settings": {"index": {"number_of_shards": 0}}},
        )
    _probe(
        client,
        "change the mapping of",
        index,
        allowed=(400, 404),
        method="PUT",
        path=f"/{index}/_mapping",
        body={"properties": {f"dotbridge-probe-{uuid.uuid4().hex}": {"type": "no-such-type"}}},
    )
    _probe(
        client,
        "write documents to",
        index,
        allowed=(404, 409),
        method="PUT",
        path=f"/{index}/_doc/dotbridge-probe-{uuid.uuid4().hex}",
        params={"require_alias": "true", "if_seq_no": 0, "if_primary_term": _NEVER},
        body={},
    )
    _probe(client, "refresh", index, allowed=(200, 404), method="POST", path=f"/{index}/_refresh")


def _client_user(client: OpenSearch) -> str | None:
    """The user name the client authenticates as (basic auth), for messages."""
    for connection in client.transport.connection_pool.connections:
        auth = getattr(connection, "http_auth", None)
        if isinstance(auth, (tuple, list)) and auth:
            return str(auth[0])
    return None


def _probe(
    client: OpenSearch,
    action: str,
    index: str,
    *,
    allowed: tuple[int, ...],
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    try:
        client.transport.perform_request(method, path, params=params, body=body)
        status = 200
    except AuthorizationException as exc:
        user = _client_user(client)
        who = f"User {user!r}" if user else "This client"
        raise PermissionDenied(
            f"{who} may not {action} index {index!r} ({error_reason(exc)}): use a user who may "
            "write to it; nothing was written."
        ) from exc
    except TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        if status not in allowed:
            raise
    if status not in allowed:  # e.g. a 2xx where a refusal was expected: stop, write nothing
        raise PermissionDenied(
            f"Could not check whether this user may {action} index {index!r} (HTTP {status}): "
            "nothing was written; report this."
        )
    return status
