"""Which engine serves a URL: one `GET /`, read by its headers and body.

Elasticsearch marks every answer it authenticated with `X-Elastic-Product: Elasticsearch`
(7.14 on), also its errors: the integration-test distribution answers `GET /` with 405 and the
header. OpenSearch sends `X-OpenSearch-Version` (2.x on) and names itself in `GET /`'s
`version.distribution`. An answer that says neither (a 401 before authentication, an older
Elasticsearch) is read from its body where it has one, else left to the default engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bridge.backends.base import Probe

if TYPE_CHECKING:
    from bridge.config import ConnectionSettings

ES_PRODUCT_HEADER = "x-elastic-product"
OPENSEARCH_HEADER = "x-opensearch-version"
ES_TAGLINE = "You Know, for Search"


def read_probe(status: int, headers: Mapping[str, str], body: bytes) -> Probe:
    """The engine and version a `GET /` answer names (pure: unit-tested on recorded answers)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    engine = None
    if lowered.get(ES_PRODUCT_HEADER, "").strip().lower() == "elasticsearch":
        engine = "elasticsearch"
    elif OPENSEARCH_HEADER in lowered:
        engine = "opensearch"
    version = None
    if status == 200:
        try:
            info = json.loads(body)
        except ValueError:
            info = None
        described = info.get("version") if isinstance(info, dict) else None
        if isinstance(described, dict):
            number = described.get("number")
            version = str(number) if number is not None else None
            if described.get("distribution") == "opensearch":
                engine = "opensearch"
            elif engine is None and info.get("tagline") == ES_TAGLINE:
                engine = "elasticsearch"  # an Elasticsearch older than the product header
    return Probe(engine=engine, version=version, status=status)


def detect(settings: ConnectionSettings) -> Probe:
    """Ask the cluster which engine it is. A failure without an answer is one sentence naming
    the engine --backend names, or neither (with auto, none has answered yet)."""
    from bridge.backends import backend_named
    from bridge.backends.opensearch import OPENSEARCH
    from bridge.client import describe_failure

    try:
        status, headers, body = OPENSEARCH.probe(settings)
    except OPENSEARCH.errors() as exc:
        forced = settings.backend != "auto"
        engine = backend_named(settings.backend) if forced else None
        raise describe_failure(exc, settings, engine=engine, engine_known=forced) from exc
    return read_probe(status, headers, body)
