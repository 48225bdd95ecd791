"""Shared fixtures: models live in model_fixtures, the nodes in node_fixtures, the gateway in
gateway_fixtures. A session without the evaluation data stops at once with one sentence."""

import pytest

from bridge.datasets import check

pytest_plugins = ("tests.model_fixtures", "tests.node_fixtures", "tests.gateway_fixtures")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The integration tests read SciFact: say how to provide it instead of failing a hundred."""
    if problem := check():
        pytest.exit(problem, returncode=4)
