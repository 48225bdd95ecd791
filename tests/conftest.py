"""Shared fixtures: models live in model_fixtures, the OpenSearch node in node_fixtures."""

pytest_plugins = ("tests.model_fixtures", "tests.node_fixtures", "tests.gateway_fixtures")
