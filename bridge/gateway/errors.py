"""Errors the gateway answers with, in OpenSearch's own error JSON, never as a traceback."""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import DotbridgeError

BAD_REQUEST_TYPE = "illegal_argument_exception"
GATEWAY_TYPE = "dotbridge_gateway_exception"


class GatewayError(Exception):
    """A failure the gateway reports itself: an HTTP status, an error type and one sentence."""

    def __init__(
        self,
        status: int,
        reason: str,
        kind: str = BAD_REQUEST_TYPE,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.reason, self.kind)


class BadRequest(GatewayError):
    """dotbridge syntax the gateway cannot run (400), e.g. a neural query on an unknown model."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason, BAD_REQUEST_TYPE)


class UpstreamUnavailable(GatewayError):
    """The cluster did not answer (502)."""

    def __init__(self, reason: str) -> None:
        super().__init__(502, reason, GATEWAY_TYPE)


class TooLarge(GatewayError):
    """A request past one of the gateway's size limits (413)."""

    def __init__(self, reason: str) -> None:
        super().__init__(413, reason, "content_too_long_exception")


class Overloaded(GatewayError):
    """The gateway has too much work queued (429, with `Retry-After`)."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(
            429, reason, "rejected_execution_exception", {"Retry-After": str(retry_after)}
        )


class UpstreamError(Exception):
    """The cluster answered a request made on a caller's behalf with an error: it is passed on
    to the caller as the cluster gave it (status, body and the headers that matter, such as
    `WWW-Authenticate` on a 401)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.headers = headers

    def error(self) -> dict[str, Any]:
        """The cluster's error object (for an `_msearch` item), or one made from its status."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "error" in parsed:
            return parsed["error"]
        text = self.body.decode("utf-8", "replace").strip() or f"HTTP {self.status}"
        return error_body(self.status, text, GATEWAY_TYPE)["error"]


def error_body(status: int, reason: str, kind: str = BAD_REQUEST_TYPE) -> dict[str, Any]:
    """OpenSearch's error shape: `{"error": {"root_cause": [...], "type", "reason"}, "status"}`."""
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def as_gateway_error(exc: BaseException) -> GatewayError | None:
    """The gateway error for a library exception a request may raise, else None (a bug)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, DotbridgeError):
        return BadRequest(exc.message)
    if isinstance(exc, KeyError):
        # A field missing from an answer of the cluster (a caller's body is read with .get).
        return UpstreamUnavailable(
            f"The cluster sent an answer without the expected {exc} field: the gateway cannot "
            "use it (is this the engine it was started against?)."
        )
    if isinstance(exc, ValueError | TypeError):
        # Raised by the body builders and option checks on a caller's values.
        text = str(exc).strip("'\"") or type(exc).__name__
        return BadRequest(text[:1].upper() + text[1:] + ("" if text.endswith(".") else "."))
    return None
