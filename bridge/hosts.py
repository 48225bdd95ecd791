"""Several hosts of one cluster: `--url "http://a:9200,http://b:9200"` (or a list in Python).

Pure parsing, used by the settings (bridge.config), the engines' clients (bridge.backends) and
the gateway: each entry is one node's URL, with the scheme, port and path prefix it names; all
entries share one scheme (TLS is all or nothing for a cluster); IPv6 literals are written in
brackets (`http://[::1]:9200`). A bad list is one sentence naming the entry and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from bridge.errors import BadInput

SCHEMES = ("http", "https")


def split_hosts(url: str | Sequence[str]) -> list[str]:
    """The entries of a comma-separated URL list (or of a list), stripped, none empty."""
    entries = [url] if isinstance(url, str) else list(url)
    hosts = [part.strip() for entry in entries for part in str(entry).split(",")]
    if not any(hosts):
        raise BadInput("The cluster URL is empty: pass --url (or OPENSEARCH_URL) with a node URL.")
    if not all(hosts):
        listed = safe_url(",".join(map(str, entries)))
        raise BadInput(
            f"The URL list {listed!r} has an empty entry: separate node URLs with "
            "single commas (http://127.0.0.1:9200,http://127.0.0.1:9201)."
        )
    return hosts


def parse_hosts(url: str | Sequence[str]) -> list[str]:
    """Each node's URL, checked: a known scheme (the same for all), a host, a valid port."""
    hosts = split_hosts(url)
    schemes = set()
    for host in hosts:
        check_host(host)
        schemes.add(host.split(":", 1)[0].lower())
    listed = safe_url(",".join(hosts))
    if len(schemes) > 1:
        raise BadInput(
            f"The URL list {listed!r} mixes http and https: a cluster's nodes all use "
            "TLS or none do, so give every URL the same scheme."
        )
    if len(set(hosts)) != len(hosts):
        raise BadInput(f"The URL list {listed!r} names a node twice: give each node once.")
    return hosts


def check_host(host: str) -> None:
    """Raise BadInput, in one sentence, for a node URL that cannot be used."""
    try:
        parts = urlsplit(host)
    except ValueError:  # an unclosed [IPv6 literal
        parts = urlsplit(host.replace("[", "").replace("]", ""))._replace(netloc="[")
    if parts.scheme.lower() not in SCHEMES or not parts.netloc:
        raise BadInput(
            f"{safe_host(host)!r} is not a node URL: write it as http://HOST:PORT or "
            "https://HOST:PORT (several separated by commas)."
        )
    try:
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        port, hostname = -1, None  # a port that is not a number, or an unclosed [IPv6 literal
    if port == -1 or not hostname:
        raise BadInput(
            f"{safe_host(host)!r} has no valid host and port: write it as http://HOST:PORT, "
            "with an IPv6 address in brackets (http://[::1]:9200)."
        )


def safe_host(host: str) -> str:
    """One node URL without any user:password part, for messages."""
    try:
        parts = urlsplit(host)
        if parts.username is None and parts.password is None:
            return host
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return host.rsplit("@", 1)[-1]


def safe_url(url: str) -> str:
    """A URL list without any user:password part, for messages."""
    return ",".join(safe_host(part.strip()) for part in url.split(","))


def uses_tls(url: str) -> bool:
    return urlsplit(url.split(",")[0].strip()).scheme.lower() == "https"


def has_password(url: str) -> bool:
    """Whether any URL of a list carries a password (never on a command line)."""
    for part in url.split(","):
        try:
            if urlsplit(part.strip()).password is not None:
                return True
        except ValueError:
            if "@" in part:
                return True
    return False
