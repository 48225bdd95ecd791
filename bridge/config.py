"""Connection settings, read once from flags or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "http://127.0.0.1:9200"
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
    timeout: float = 60.0

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part, for messages."""
        parts = urlsplit(self.url)
        if parts.password is None and parts.username is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))

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
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
