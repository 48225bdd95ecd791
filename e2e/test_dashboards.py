"""A real OpenSearch Dashboards 2.19 in Chromium, through `dotbridge serve`.

Each test drives the UI as a person does (types in the search bar, adds a filter pill, types in
the Dev Tools console) and reads what Discover received: the search answer the browser got back
(captured on the wire, so the rows are the ones Discover renders), compared with the ranking of
`dotbridge search --mode MODE` for the same text. A screenshot of each test's final screen is
kept under the run's output folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from e2e.conftest import http, raw_hits

TEXT = "vitamin d deficiency in older adults"  # no DQL keyword (and, or, not) in it
LUCENE_TEXT = "immune response to infection"
MODES = ("knn", "rerank", "hybrid", "bm25")
XSRF = {"osd-xsrf": "true"}
FIRST_ROWS = 10


def index_pattern(osd: str, title: str, time_field: str | None = None) -> str:
    """An index pattern (a saved object, as the management page saves it); its id."""
    pattern_id = "e2e-" + re.sub(r"[^a-z0-9]+", "-", title) + ("-time" if time_field else "")
    attributes = {"title": title}
    if time_field:
        attributes["timeFieldName"] = time_field
    http(
        "POST",
        f"{osd}/api/saved_objects/index-pattern/{pattern_id}?overwrite=true",
        {"attributes": attributes},
        XSRF,
    )
    return pattern_id


def discover_url(osd: str, pattern_id: str, language: str, sort: str = "!()") -> str:
    a = (
        f"(discover:(columns:!(_source),isDirty:!f,sort:{sort}),"
        f"metadata:(indexPattern:'{pattern_id}',view:discover))"
    )
    g = "(filters:!(),refreshInterval:(pause:!t,value:0),"
    g += "time:(from:'2000-01-01T00:00:00.000Z',to:now))"
    q = f"(filters:!(),query:(language:{language},query:''))"
    return f"{osd}/app/data-explorer/discover#?_a={quote(a)}&_g={quote(g)}&_q={quote(q)}"


def is_search(text: str):
    """Discover's search request for the text (the data plugin's /internal/search route)."""

    def predicate(request) -> bool:
        return (
            "/internal/search" in request.url
            and request.method == "POST"
            and text in (request.post_data or "")
        )

    return predicate


@contextlib.contextmanager
def answer_of(page, wanted) -> Iterator[dict]:
    """The answer to the first request `wanted` accepts, read as it passes: the request is
    routed through Playwright and its answer handed to the page unchanged, so its body is kept
    even when Discover rewrites its URL before the body could be read from the browser. A
    request the page gives up before its answer arrives (a newer search replaced it) is
    passed over: the answer kept is one the page received.
    After the block: {"status": int, "text": str}."""
    caught: dict = {}

    def handle(route) -> None:
        if caught or not wanted(route.request):
            route.fallback()
            return
        try:
            response = route.fetch()
            body = response.body()
            route.fulfill(response=response, body=body)
        except PlaywrightError:
            # the page gave this request up (a newer search replaced it): the next one counts
            return
        caught.update(status=response.status, text=body.decode("utf-8", errors="replace"))

    page.route("**/*", handle)
    try:
        yield caught
        deadline = time.monotonic() + 120
        while not caught and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert caught, "the page sent no such request within 120 s"
    finally:
        page.unroute("**/*", handle)


def type_and_search(page, text: str, answer: dict | None = None) -> list[dict]:
    """Type the text in the query bar, press Enter; the hits of the answer Discover got (the
    whole answer into `answer` when given)."""
    bar = page.get_by_test_id("queryInput")
    bar.wait_for()
    # as a person does: type once the page has shown its first rows (the empty search), so
    # that the search caught below is the one Enter sends
    page.get_by_test_id("discoverQueryHits").wait_for()
    page.wait_for_load_state("networkidle")
    bar.fill(text)
    with answer_of(page, is_search(text)) as caught:
        bar.press("Enter")
    assert caught["status"] == 200, caught["text"][:500]
    payload = json.loads(caught["text"])
    hits = raw_hits(payload)
    assert hits is not None, caught["text"][:500]
    if answer is not None:
        answer.update(payload)
    page.get_by_test_id("discoverQueryHits").wait_for()
    return hits


@pytest.mark.parametrize("language", ["kuery", "lucene"])
@pytest.mark.parametrize("mode", MODES)
def test_discover_ranks_as_the_search_command(page, osd, index, reference, mode, language):
    alias = f"{index}.{mode}"
    page.goto(discover_url(osd, index_pattern(osd, alias), language))
    text = TEXT if language == "kuery" else LUCENE_TEXT
    hits = type_and_search(page, text)
    # Discover asks for 500 rows; its first rows are `dotbridge search --mode MODE TEXT` with
    # the command's defaults (rerank and hybrid rank their default first stage of 100, so they
    # show at most 100 rows, the command's ranking for as many)
    assert [h["_id"] for h in hits[:FIRST_ROWS]] == reference(mode, text)
    if mode in ("rerank", "hybrid"):
        assert len(hits) <= 100 and [h["_id"] for h in hits] == reference(mode, text, len(hits))
    assert all("vector" not in h.get("_source", {}) for h in hits[:FIRST_ROWS])
    # the first row on screen is the first hit
    first_title = hits[0]["_source"]["title"][:30]
    expect(page.get_by_text(first_title, exact=False).first).to_be_visible(timeout=60_000)


def test_a_filter_pill_holds_and_the_order_stays(page, osd, node, index, reference):
    alias = f"{index}.knn"
    page.goto(discover_url(osd, index_pattern(osd, alias), "kuery"))
    type_and_search(page, TEXT)
    page.get_by_test_id("addFilter").click()
    field = page.get_by_test_id("filterFieldSuggestionList").locator("input")
    field.fill("text")
    field.press("Enter")
    operator = page.get_by_test_id("filterOperatorList").locator("input")
    operator.fill("is")
    page.get_by_role("option", name="is", exact=True).click()
    page.get_by_test_id("filterParams").locator("input").first.fill("cells")
    with answer_of(page, is_search(TEXT)) as caught:
        page.get_by_test_id("saveFilter").click()
    hits = raw_hits(json.loads(caught["text"]))
    pill = {"bool": {"filter": [{"match_phrase": {"text": "cells"}}]}}
    expected = reference("knn", TEXT, len(hits), pill)
    assert [h["_id"] for h in hits[:FIRST_ROWS]] == expected[:FIRST_ROWS]
    # every row matches the pill, as the cluster itself reads it (its analyzer stems)
    matching = http(
        "POST", f"{node}/{index}/_search", {"size": 10000, "_source": False, "query": pill}
    )
    assert {h["_id"] for h in hits} <= {h["_id"] for h in matching["hits"]["hits"]}
    assert page.locator("[data-test-subj^='filter filter-enabled']").count() == 1


def test_a_time_field_pattern_selects_by_the_model_and_sorts_by_time(page, osd, index, reference):
    """A pattern with a time field (`ts`, added by e2e/run.py): Discover sorts by time and draws
    a histogram; the rows are the model's top 500 for the text, newest first, with the model's
    score; sorting by _score gives the mode's order."""
    alias = f"{index}.knn"
    pattern = index_pattern(osd, alias, time_field="ts")
    page.goto(discover_url(osd, pattern, "kuery"))
    answer: dict = {}
    hits = type_and_search(page, TEXT, answer)
    expected = reference("knn", TEXT, len(hits))
    assert {h["_id"] for h in hits} == set(expected)
    stamps = [h["_source"]["ts"] for h in hits]
    assert stamps == sorted(stamps, reverse=True)
    assert '"date_histogram"' in json.dumps(answer) or '"buckets"' in json.dumps(answer)
    page.goto(discover_url(osd, pattern, "kuery", sort="!(!(_score,desc))"))
    by_score = type_and_search(page, TEXT)
    assert [h["_id"] for h in by_score[:FIRST_ROWS]] == expected[:FIRST_ROWS]


def console_bodies(index: str) -> dict[str, str]:
    """The README's documented queries (neural, ext.rerank, hybrid) as typed in the console."""
    bm25 = {
        "multi_match": {
            "query": TEXT,
            "fields": ["title", "text"],
            "type": "best_fields",
            "tie_breaker": 0.5,
        }
    }
    neural = {"neural": {"vector": {"query_text": TEXT, "k": 10}}}
    bodies = {
        "knn": {"size": 10, "query": neural},
        "rerank": {
            "size": 10,
            "query": bm25,
            "ext": {"rerank": {"query_context": {"query_text": TEXT}}},
        },
        "hybrid": {
            "size": 10,
            "query": {
                "hybrid": {
                    "queries": [bm25, {"neural": {"vector": {"query_text": TEXT, "k": 100}}}]
                }
            },
        },
    }
    return {
        mode: f"GET {index}/_search\n{json.dumps(body, indent=2)}" for mode, body in bodies.items()
    }


@pytest.mark.parametrize("mode", ["knn", "rerank", "hybrid"])
def test_dev_tools_console_returns_the_search_commands_ranking(page, osd, index, reference, mode):
    page.goto(f"{osd}/app/dev_tools#/console")
    editor = page.locator("#ConAppInputTextarea, [data-test-subj='request-editor']").first
    editor.wait_for()
    for dismiss in ("help-close-button", "dismissConsoleWelcome"):  # first-visit panels
        button = page.get_by_test_id(dismiss)
        if button.count():
            button.first.click()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(console_bodies(index)[mode])
    with answer_of(page, lambda r: "/api/console/proxy" in r.url) as caught:
        page.get_by_test_id("sendRequestButton").click()
    answer = json.loads(caught["text"])
    assert [h["_id"] for h in answer["hits"]["hits"]] == reference(mode, TEXT, 10)
    page.locator("#ConAppOutputTextarea, [data-test-subj='response-editor']").first.wait_for()


def test_start_up_traffic_passes_through_and_the_gateway_logs_no_error(osd, gateway, index):
    status = http("GET", f"{osd}/api/status")
    assert status["status"]["overall"]["state"] == "green"
    fields = http("GET", f"{osd}/api/index_patterns/_fields_for_wildcard?pattern={index}.knn")
    assert {"title", "text"} <= {f["name"] for f in fields["fields"]}
    log = Path(os.environ["E2E_GATEWAY_LOG"]).read_text(errors="replace")
    assert re.search(r"GET /_nodes\?filter_path=nodes.*HTTP/1.1\" 200", log), (
        "no version check seen"
    )
    assert re.search(r"/\.kibana", log), "no saved-objects traffic seen"
    errors = [line for line in log.splitlines() if re.search(r"ERROR|Traceback|\" 5\d\d ", line)]
    assert not errors, "\n".join(errors[:20])
