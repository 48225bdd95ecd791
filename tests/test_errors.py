"""error_reason: one line from every shape an OpenSearch failure arrives in."""

from __future__ import annotations

from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import RequestError

from bridge.errors import error_reason

BODY = {
    "error": {
        "root_cause": [{"type": "illegal_argument_exception", "reason": "bad field"}],
        "type": "search_phase_execution_exception",
        "reason": "all shards failed",
    },
    "status": 400,
}


def test_client_exception_gives_its_root_cause():
    exc = RequestError(400, "search_phase_execution_exception", BODY)
    assert error_reason(exc) == "illegal_argument_exception: bad field"


def test_bulk_item_and_bare_error_object_read_alike():
    item = {
        "_id": "d1",
        "status": 400,
        "error": {"type": "mapper_parsing_exception", "reason": "x"},
    }
    assert error_reason(item) == "mapper_parsing_exception: x"
    assert error_reason(BODY["error"]) == "illegal_argument_exception: bad field"


def test_exception_without_body_names_status_or_type():
    assert error_reason(RequestError(404, "not_found", "no body")) == "HTTP 404 not_found"
    assert error_reason(OSConnectionError("N/A", "refused", OSError())) == "ConnectionError"


def test_text_is_one_line():
    assert error_reason("line one\n  line two ") == "line one line two"
