"""The one place that connects to a cluster, OpenSearch or Elasticsearch: which engine it is
(`--backend`, else detected), then that engine's client with auth, TLS, retries and timeouts.

It also turns every client failure into the one sentence a user sees (`describe_failure`), and
checks before a write run that the user may write (`check_can_write`). What differs between the
engines' clients lives in `bridge.backends`; the sentences are written once, here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from bridge.backends import (
    Backend,
    Failure,
    UnsupportedCluster,
    backend_named,
    backend_of,
    owner,
    status_of,
)
from bridge.backends.detect import detect
from bridge.backends.opensearch import MAX_RETRIES, RETRY_ON_STATUS
from bridge.config import ConnectionSettings
from bridge.errors import ConnectionFailed, DotbridgeError, error_reason

log = logging.getLogger(__name__)

__all__ = [
    "MAX_RETRIES",
    "RETRY_ON_STATUS",
    "AuthenticationFailed",
    "ClusterTimeout",
    "PermissionDenied",
    "RequestFailed",
    "TlsFailed",
    "UnsupportedCluster",
    "check_can_write",
    "connect",
    "describe_failure",
]


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


_warned_insecure: set[str] = set()
_warn_lock = threading.Lock()


def connect(settings: ConnectionSettings, *, check: bool = True) -> Any:
    """A client for the cluster: opensearch-py's `OpenSearch` or elasticsearch-py's
    `Elasticsearch`, as `settings.backend` names or, with `auto`, as the cluster answers.

    With check (or with `auto`, which must ask), one `GET /` tells the engine; with check, the
    engine's own check follows (a version it cannot serve, 401, 403), each failure one sentence.
    """
    name = settings.backend
    probe = None
    if name == "auto" or check:
        probe = detect(settings)
        if name == "auto":
            name = probe.engine or "opensearch"  # an answer that names no engine: the default
        elif probe.engine is not None and probe.engine != name:
            found = backend_named(probe.engine).product
            version = f" {probe.version}" if probe.version else ""
            raise UnsupportedCluster(
                f"--backend {name} (DOTBRIDGE_BACKEND), but {settings.safe_url} is "
                f"{found}{version}: pass --backend {probe.engine}, or auto."
            )
    backend = backend_named(name)
    if not settings.verify_certs and settings.uses_tls:
        _warn_insecure(settings)
    client = backend.client(settings)
    if check:
        try:
            backend.check(client, settings, probe)
        except backend.errors() as exc:
            raise describe_failure(exc, settings) from exc
    return client


def connect_for_writing(settings: ConnectionSettings, index: str) -> Any:
    """A client that may fill `index`, checked before a model is loaded or anything written."""
    client = connect(settings)
    check_can_write(client, index)
    return client


def cluster_status(settings: ConnectionSettings) -> dict[str, str]:
    """URL (without credentials), version, name and size, health and plugins of the cluster."""
    client = connect(settings)
    info = client.info()
    health = client.cluster.health()
    plugins = sorted({p["component"] for p in client.cat.plugins(format="json")})
    return {
        "url": settings.safe_url,
        "version": info["version"]["number"],
        "cluster": f"{health['cluster_name']} ({health['number_of_nodes']} nodes)",
        "health": health["status"],
        "plugins": ", ".join(plugins) or "(none)",
        **_nodes(client),
    }


def _nodes(client: Any) -> dict[str, str]:
    """Each node: its HTTP address, roles, and whether it is the elected cluster manager."""
    backend = backend_of(client)
    found = backend.request(client, "GET", "/_nodes/http", params={"filter_path": "nodes"})
    rows = backend.request(client, "GET", "/_cat/nodes", params={"format": "json", "h": "name,m"})
    elected = {row.get("name") for row in rows if row.get("m") == "*"}
    lines = {}
    for node in sorted((found.get("nodes") or {}).values(), key=lambda n: n.get("name", "")):
        address = (node.get("http") or {}).get("publish_address", "?")
        mark = ", elected cluster manager" if node.get("name") in elected else ""
        roles = ", ".join(node.get("roles") or ["no roles"])
        lines[f"node {node.get('name')}"] = f"{address} ({roles}{mark})"
    return lines


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
    exc: BaseException,
    settings: ConnectionSettings | None = None,
    *,
    engine: Backend | None = None,
    engine_known: bool = True,
) -> DotbridgeError:
    """The one sentence a user sees for a client failure (TLS, 401, 403, timeouts, HTTP errors).

    Takes any exception of either engine's client (a DotbridgeError is returned as it is). With
    the settings in use, the message names the URL, the user and the timeouts; never the
    password. The sentence names `engine`, else the engine whose client failed, unless
    `engine_known` is False (detection, before any engine answered).
    """
    if isinstance(exc, DotbridgeError):
        return exc
    backend = owner(exc)
    failure = backend.classify(exc) if backend is not None else None
    if failure is None:
        failure = Failure("other", status_of(exc), error_reason(exc))
    named = (engine or backend) if engine_known else None
    product = named.product if named is not None else None
    hint = named.start_hint if named is not None else None
    error = _sentence(failure, settings or _UNKNOWN, product, hint, known=settings is not None)
    if error.message.startswith(_UNKNOWN.url):  # a sentence starts with a capital
        error.message = error.message[:1].upper() + error.message[1:]
    password = settings.password if settings else None
    if password and password in error.message:  # never, but never print it
        error.message = error.message.replace(password, "***")
    return error


# Stands in for the settings when a caller has none: "the cluster", timeouts not named.
_UNKNOWN = ConnectionSettings(url="the cluster")
# Names the engine when none has answered yet.
_EITHER = "OpenSearch or Elasticsearch"
_EITHER_HINT = (
    "start a local node with `dotbridge opensearch start` (or `dotbridge elasticsearch start`)"
)


def _sentence(
    failure: Failure,
    settings: ConnectionSettings,
    product: str | None,
    start_hint: str | None,
    *,
    known: bool,
) -> DotbridgeError:
    url = settings.safe_url
    user = settings.user
    engine = product or _EITHER
    kind = failure.kind
    if kind == "unauthenticated":
        at = f"{product} at {url}" if product else f"The cluster at {url}"
        if user:
            return AuthenticationFailed(
                f"{at} refused the credentials of user {user!r} (HTTP 401): "
                "check --user (OPENSEARCH_USER) and the password in OPENSEARCH_PASSWORD."
            )
        return AuthenticationFailed(
            f"{at} requires a user (HTTP 401): pass --user (or set "
            "OPENSEARCH_USER) and set OPENSEARCH_PASSWORD."
        )
    if kind == "forbidden":
        who = f"User {user!r}" if user else ("A request without a user" if known else "The user")
        return PermissionDenied(
            f"{who} may not do this on {url} ({failure.reason}): use a user with that "
            "permission or ask the cluster's administrator for it."
        )
    if kind == "tls":
        return _describe_tls(failure.detail, settings)
    if kind == "connect_timeout":
        within = f"within {settings.connect_timeout:g} s" if known else "in time"
        return ClusterTimeout(
            f"Nothing at {url} accepted a connection {within}: check the URL and the "
            "network, or raise --connect-timeout."
        )
    if kind == "read_timeout":
        within = f"within {settings.timeout:g} s" if known else "in time"
        return ClusterTimeout(
            f"{url} accepted the connection but sent no answer {within}: check that it is a "
            f"healthy {engine} node, or raise --timeout."
        )
    if kind == "closed":
        plain = known and not settings.uses_tls
        hint = "if the cluster uses TLS, use an https:// URL, or " if plain else ""
        return ConnectionFailed(
            f"{url} closed the connection without an answer: {hint}check that an "
            f"{engine} node listens there."
        )
    if kind == "unreachable":
        return ConnectionFailed(
            f"No {engine} answers at {url} ({failure.detail}): {start_hint or _EITHER_HINT} "
            "or set OPENSEARCH_URL to your cluster."
        )
    status = failure.status
    if kind == "http" and product:
        if isinstance(status, int) and (status == 429 or status >= 500):
            return RequestFailed(
                f"{product} at {url} could not serve the request ({failure.reason}, HTTP "
                f"{status}) after {MAX_RETRIES} retries: check the cluster's health and try again."
            )
        return RequestFailed(
            f"{product} at {url} refused the request (HTTP {status}, {failure.reason}): "
            "check the index name and the options given, then try again."
        )
    return RequestFailed(
        f"The request to {url} failed ({failure.reason}): check that the cluster is up, then "
        "try again."
    )


def _describe_tls(text: str, settings: ConnectionSettings) -> DotbridgeError:
    url = settings.safe_url
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


# ---- may this user write? ----------------------------------------------------------------------

# A write run (ingest) creates the index or changes its settings and mapping, writes documents
# and refreshes. Each probe below needs the same privilege as one of those steps, and is built
# to be refused by the cluster *after* the security plugin has let it through, so that nothing
# is ever created, written or changed: a 403 means "not allowed", the expected 4xx "allowed".
_NEVER = 2**62  # a primary term no index reaches: a conditional write that can never apply


def check_can_write(client: Any, index: str) -> None:
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


def _probe(
    client: Any,
    action: str,
    index: str,
    *,
    allowed: tuple[int, ...],
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    backend = backend_of(client)
    try:
        backend.request(client, method, path, params=params, body=body)
        status = 200
    except backend.errors() as exc:
        status = backend.status(exc) or 0
        if status == 403:
            user = backend.user(client)
            who = f"User {user!r}" if user else "This client"
            raise PermissionDenied(
                f"{who} may not {action} index {index!r} ({error_reason(exc)}): use a user who "
                "may write to it; nothing was written."
            ) from exc
        if status not in allowed:
            raise
    if status not in allowed:  # e.g. a 2xx where a refusal was expected: stop, write nothing
        raise PermissionDenied(
            f"Could not check whether this user may {action} index {index!r} (HTTP {status}): "
            "nothing was written; report this."
        )
    return status
