"""Errors a user sees: one sentence saying what is wrong and what to do, and a non-zero exit."""

from __future__ import annotations

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


class RejectedRecords(DotbridgeError):
    """A run finished, but some input records were rejected (see the rejects file)."""

    exit_code = 2
