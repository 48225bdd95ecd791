"""Errors a user sees: one sentence saying what is wrong and what to do, and a non-zero exit."""

from __future__ import annotations

from typing import Any

import click


class DotbridgeError(click.ClickException):
    """Base of every error dotbridge reports to a user."""


class NodeError(DotbridgeError):
    """The embedded OpenSearch node could not be fetched, assembled, started or stopped."""


class ConnectionFailed(DotbridgeError):
    """No OpenSearch cluster answers at the configured address."""


class IndexMismatch(DotbridgeError):
    """An index was built for another model, dimension or similarity than the one in use."""


class BadInput(DotbridgeError):
    """Input the user gave (a query, a file, an option) cannot be used as it is."""


class IngestFailed(DotbridgeError):
    """An ingest run stopped before its end: the cluster refused its requests or stayed away."""


class RejectedRecords(DotbridgeError):
    """A run finished, but some input records were rejected (see the rejects file)."""

    exit_code = 2


def error_reason(error: Any) -> str:
    """The reason of an OpenSearch (or Elasticsearch) failure, as `type: reason`, in one line.

    Takes whatever carries the error: a client exception (its response body), a response or
    bulk item body with an `error` key, the `error` object itself (its first `root_cause` wins),
    or a plain string. Never raises: an unknown shape gives its type name or text.
    """
    info = getattr(error, "info", None)
    if isinstance(error, BaseException):
        if isinstance(info, dict) and info.get("error"):
            return error_reason(info)
        status = getattr(error, "status_code", None)
        detail = getattr(error, "error", None)
        if isinstance(status, int):
            return f"HTTP {status}" + (f" {detail}" if isinstance(detail, str) and detail else "")
        return type(error).__name__
    if isinstance(error, dict):
        if "error" in error:
            inner = error["error"]
            return error_reason(inner) if inner else str(error.get("status", "error"))
        causes = error.get("root_cause") or []
        first = causes[0] if causes and isinstance(causes[0], dict) else error
        kind, reason = first.get("type"), first.get("reason")
        if kind or reason:
            return ": ".join(str(part) for part in (kind, reason) if part)
        return str(error)
    return " ".join(str(error).split()) or "unknown error"


def error_type(error: Any) -> str | None:
    """The `type` of an engine's error (`resource_already_exists_exception`), from a client
    exception (its response body) or an error body; None when it names none."""
    info = getattr(error, "info", error)
    if isinstance(info, dict) and "error" in info:
        info = info["error"]
    if isinstance(info, dict):
        kind = info.get("type")
        return kind if isinstance(kind, str) else None
    return None
