"""Connection settings, read once from flags or the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from bridge.errors import BadInput

DEFAULT_URL = "http://127.0.0.1:9200"
DEFAULT_TIMEOUT = 60.0  # seconds to wait for an answer once connected
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to wait for a connection
# The seed checkpoint: DistilBERT, CLS vector, raw dot product (arXiv 2010.02666).
SEED_MODEL = "sebastian-hofstaetter/distilbert-dot-margin_mse-T2-msmarco"


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    """Where the cluster is and how to authenticate; the password never appears in repr."""

    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part, for messages."""
        parts = urlsplit(self.url)
        if parts.password is None and parts.username is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @classmethod
    def from_env(cls, **overrides: object) -> ConnectionSettings:
        """Settings from OPENSEARCH_* variables; explicit non-None overrides win."""
        env = os.environ
        values: dict[str, object] = {
            "url": env.get("OPENSEARCH_URL") or DEFAULT_URL,
            "user": env.get("OPENSEARCH_USER") or None,
            "password": env.get("OPENSEARCH_PASSWORD") or None,
            "verify_certs": env.get("OPENSEARCH_VERIFY_CERTS", "true").lower()
            not in ("0", "false", "no"),
            "ca_certs": env.get("OPENSEARCH_CA_CERTS") or None,
            "timeout": _seconds("OPENSEARCH_TIMEOUT", DEFAULT_TIMEOUT),
            "connect_timeout": _seconds("OPENSEARCH_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_password(self, prompt: Callable[[str], str] | None) -> ConnectionSettings:
        """These settings with a password wherever a user is given without one.

        The password comes from OPENSEARCH_PASSWORD (already read) or from `prompt`, a hidden
        prompt on a terminal; never from a command-line flag, which any user could read in the
        process list. Without a terminal (prompt None) a missing password is an error.
        """
        if not self.user or self.password is not None:
            return self
        if prompt is None:
            raise BadInput(
                f"User {self.user!r} has no password: set OPENSEARCH_PASSWORD (dotbridge asks "
                "for it only on a terminal, and takes no password flag)."
            )
        return dataclasses.replace(
            self, password=prompt(f"Password for {self.user} at {self.safe_url}")
        )


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BadInput(f"{var}={raw!r} is not a number of seconds above 0: fix or unset it.")
    return value
