"""Fixtures of the browser tests: the services `e2e/run.py` started (URLs in the environment),
the system Chromium through Playwright, the references computed by `dotbridge search`'s own
searchers, and a screenshot per test under the run's output folder."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRED = ("E2E_DASHBOARDS_URL", "E2E_GATEWAY_URL", "E2E_NODE_URL", "E2E_OUT")


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            f"The browser tests need running services ({', '.join(missing)} unset): run them "
            "with `make e2e` (e2e/run.py starts everything)."
        )


@pytest.fixture(scope="session")
def osd() -> str:
    return os.environ["E2E_DASHBOARDS_URL"]


@pytest.fixture(scope="session")
def gateway() -> str:
    return os.environ["E2E_GATEWAY_URL"]


@pytest.fixture(scope="session")
def node() -> str:
    return os.environ["E2E_NODE_URL"]


@pytest.fixture(scope="session")
def index() -> str:
    return os.environ.get("E2E_INDEX", "scifact")


@pytest.fixture(scope="session")
def out() -> Path:
    folder = Path(os.environ["E2E_OUT"]) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def http(method: str, url: str, body: Any = None, headers: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def client(node):
    from bridge.client import connect
    from bridge.config import ConnectionSettings

    return connect(ConnectionSettings(url=node))


@pytest.fixture(scope="session")
def reference(client, index):
    """`dotbridge search --mode MODE`'s ranking: the searcher the command opens (the model the
    index records, loaded once), keyed by (mode, text, filter)."""
    from bridge.config import ModelSettings
    from bridge.search.query import open_searcher

    cache: dict = {}

    def ranking(mode: str, text: str, k: int = 10, filter: dict | None = None) -> list[str]:
        key = (mode, json.dumps(filter, sort_keys=True))
        if key not in cache:
            options: dict[str, Any] = {"filter": filter} if filter else {}
            cache[key] = open_searcher(
                client, index, mode, ModelSettings(model="minilm"), **options
            )
        return [hit.doc_id for hit in cache[key].search(text, k)]

    return ranking


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        p.selectors.set_test_id_attribute("data-test-subj")  # Dashboards' own test ids
        chromium = p.chromium.launch(
            executable_path=os.environ["DOTBRIDGE_CHROMIUM"],
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, out, request) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(120_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
        try:
            tab.screenshot(path=str(out / f"{name}.png"))
        finally:
            context.close()


def raw_hits(payload: Any) -> list[dict] | None:
    """The hits of an OpenSearch answer wherever Dashboards wrapped it (rawResponse, body...)."""
    if isinstance(payload, dict):
        hits = payload.get("hits")
        if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
            return hits["hits"]
        for value in payload.values():
            found = raw_hits(value)
            if found is not None:
                return found
    return None
