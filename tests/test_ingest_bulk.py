"""The bulk writer's retry, conflict and failure logic, against a real node.

Faults a healthy node will not produce on demand (one 429 item, a reply lost after the
documents were written, a permanent refusal) come from small subclasses of the real client
that alter one real exchange; everything else is the node's own answer.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import AuthorizationException
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from tqdm import tqdm

from bridge.errors import IngestFailed
from bridge.indexes import IndexSpec, ensure_index
from ingest.bulk import BulkWriter, Patience, document_source, judge, origin
from ingest.ledger import IngestStats, Ledger, RejectsFile
from ingest.pipeline import ingest
from ingest.readers import Record
from tests.ingest_helpers import count, refresh_interval

pytestmark = pytest.mark.integration


def records(n: int, prefix: str = "d") -> list[Record]:
    return [Record(i + 1, f"{prefix}{i}", "", f"passage number {i} about things") for i in range(n)]


class Writer:
    """A BulkWriter on `client` with its ledger, for one batch at a time."""

    def __init__(self, client, index, tmp_path, *, run_id: str = "r1") -> None:
        self.stats = IngestStats()
        self.rejects = RejectsFile(tmp_path / f"{run_id}.rejects.jsonl")
        self.ledger = Ledger(self.stats, self.rejects, tqdm(disable=True))
        patience = Patience(30.0)
        self.writer = BulkWriter(client, index, "vector", self.ledger, patience, run_id=run_id)

    def index(self, batch: list[Record]) -> IngestStats:
        self.writer.start()
        self.writer.put(batch, np.ones((len(batch), 32), dtype=np.float32))
        self.writer.finish()
        self.rejects.close()
        return self.stats


@pytest.fixture
def tiny_index(os_client, index_name, tiny_encoder) -> str:
    ensure_index(os_client, index_name, IndexSpec.of(tiny_encoder))
    return index_name


class Throttled(OpenSearch):
    """The real client, except that the first bulk answers 429 for one item it did not send."""

    def __init__(self, *args, victim: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.victim, self.calls = victim, 0

    def bulk(self, body=None, **kwargs):
        self.calls += 1
        if self.calls > 1:
            return super().bulk(body=body, **kwargs)
        lines = body.strip().split("\n")
        pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
        ids = [json.loads(action)["create"]["_id"] for action, _ in pairs]
        spot = ids.index(self.victim)
        kept = [line for k, pair in enumerate(pairs) if k != spot for line in pair]
        resp = super().bulk(body="\n".join(kept) + "\n", **kwargs)
        refused = {
            "_index": "x",
            "_id": self.victim,
            "status": 429,
            "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
        }
        resp["items"].insert(spot, {"create": refused})
        resp["errors"] = True
        return resp


def test_a_429_item_is_sent_again_alone_and_indexed(opensearch_settings, tiny_index, tmp_path):
    client = Throttled(hosts=[opensearch_settings.url], victim="d7")
    stats = Writer(client, tiny_index, tmp_path).index(records(20))
    assert client.calls == 2
    assert (stats.indexed, stats.rejected, stats.already_present, stats.retried) == (20, 0, 0, 1)
    assert count(client, tiny_index) == 20
    assert client.get(index=tiny_index, id="d7")["_source"]["doc_id"] == "d7"


class LostReply(OpenSearch):
    """The real client, except that the first bulk's reply is lost after the node wrote it."""

    calls = 0

    def bulk(self, body=None, **kwargs):
        self.calls += 1
        resp = super().bulk(body=body, **kwargs)
        if self.calls == 1:
            raise OSConnectionError("N/A", "connection reset after the request was sent", None)
        return resp


def test_a_lost_reply_counts_the_documents_as_indexed_by_this_run(
    opensearch_settings, tiny_index, tmp_path
):
    client = LostReply(hosts=[opensearch_settings.url])
    stats = Writer(client, tiny_index, tmp_path).index(records(12))
    # The resend meets 12 conflicts, each with this run's own origin: indexed, not "present".
    assert (stats.indexed, stats.already_present, stats.rejected, stats.retried) == (12, 0, 0, 12)
    assert count(client, tiny_index) == 12


def test_conflicts_tell_an_earlier_run_from_a_duplicate(os_client, tiny_index, tmp_path):
    first = records(5)
    Writer(os_client, tiny_index, tmp_path).index(first)
    again = [
        first[0],  # the same line and text: an earlier run's document
        Record(40, "d1", "", first[1].text),  # the same id from another line: a duplicate
        Record(3, "d2", "", "other text on the same line"),  # the input changed
        Record(41, "new", "", "a new passage"),
    ]
    other = Writer(os_client, tiny_index, tmp_path, run_id="r2")
    stats = other.index(again)
    assert (stats.indexed, stats.already_present, stats.rejected) == (1, 1, 2)
    reasons = {r["line"]: r["reason"] for r in map(json.loads, other.rejects.path.open())}
    assert reasons == {
        40: "duplicate id in input (line 2 holds it)",
        3: "id already indexed with other content (from line 3 of an earlier input)",
    }
    stored = os_client.get(index=tiny_index, id="d2")["_source"]
    assert stored["text"] == first[2].text  # never overwritten


def test_judge_reads_the_stored_origin():
    record = Record(7, "x", "t", "text")
    assert judge(record, {"ingest": origin(record, "r1")}, "r1").fate == "ours"
    assert judge(record, {"ingest": origin(record, "r0")}, "r1").fate == "present"
    assert judge(record, {}, "r1").fate == "present"  # indexed before origins were kept
    moved = Record(9, "x", "t", "text")
    assert judge(moved, {"ingest": origin(record, "r1")}, "r1").reason == (
        "duplicate id in input (line 7 holds it)"
    )


class Forbidden(OpenSearch):
    """The real client, except that every bulk is refused for good (as a read-only role is)."""

    def bulk(self, body=None, **kwargs):
        raise AuthorizationException(
            403, "security_exception", {"error": {"type": "security_exception", "reason": "no"}}
        )


def test_a_permanent_bulk_error_reaches_the_caller_without_a_hang(
    opensearch_settings, index_name, tiny_encoder, tmp_path
):
    client = Forbidden(hosts=[opensearch_settings.url])
    outcome: dict = {}

    def run() -> None:
        try:
            # Many small windows: the producer keeps handing batches to a writer that failed.
            ingest(
                records(400),
                client=client,
                index=index_name,
                encoder=tiny_encoder,
                rejects=RejectsFile(tmp_path / "r.jsonl"),
                batch_size=8,
                sort_window=1,
                progress=False,
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "ingest hung after the bulk thread failed"
    error = outcome.get("error")
    assert isinstance(error, IngestFailed), error
    assert "security_exception: no" in error.message
    assert time.monotonic() - started < 60
    assert refresh_interval(client, index_name) is None  # restored after the failure
    assert count(client, index_name) == 0


def test_the_run_error_is_seen_when_restoring_refresh_fails_too(
    os_client, index_name, tiny_encoder, tmp_path
):
    class Vanishing:
        """The tiny encoder; at its second window the index is deleted and the encoder fails."""

        calls = 0

        def __getattr__(self, name):
            return getattr(tiny_encoder, name)

        def encode_passages(self, texts, **kwargs):
            self.calls += 1
            if self.calls == 2:
                os_client.indices.delete(index=index_name)
                raise RuntimeError("encoder broke")
            return tiny_encoder.encode_passages(texts, **kwargs)

    with pytest.raises(RuntimeError, match="encoder broke"):
        ingest(
            records(64),
            client=os_client,
            index=index_name,
            encoder=Vanishing(),
            rejects=RejectsFile(tmp_path / "r.jsonl"),
            batch_size=16,
            sort_window=1,
            progress=False,
        )


def test_documents_made_as_json_elsewhere_are_sent_as_they_are(
    engine, engine_index, tiny_encoder, tmp_path
):
    """What Ray's workers hand over: each `_source` already JSON, records from several files."""
    ensure_index(engine.client, engine_index, IndexSpec.of(tiny_encoder))
    batch = [Record(i + 1, f"d{i}", "", f"passage {i}", "part-1.jsonl") for i in range(5)]
    batch.append(Record(1, "d0", "", "another passage", "part-2.jsonl"))  # line 1, other file
    sources = [
        json.dumps(
            document_source(r, "vector", np.full(32, k, dtype=np.float32), "r1"),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for k, r in enumerate(batch)
    ]
    stats = IngestStats()
    rejects = RejectsFile(tmp_path / "rejects.jsonl")
    writer = BulkWriter(
        engine.client,
        engine_index,
        "vector",
        Ledger(stats, rejects, tqdm(disable=True)),
        Patience(30.0),
        run_id="r1",
    )
    writer.start()
    writer.put(batch, sources)
    writer.finish()
    rejects.close()
    assert (stats.indexed, stats.rejected) == (5, 1)
    assert json.loads((tmp_path / "rejects.jsonl").read_text()) == {
        "file": "part-2.jsonl",
        "line": 1,
        "id": "d0",
        "reason": "duplicate id in input (line 1 of part-1.jsonl holds it)",
    }
    stored = engine.client.get(index=engine_index, id="d3")["_source"]
    assert stored["vector"] == [3.0] * 32 and stored["text"] == "passage 3"
    assert stored["ingest"] == {**origin(batch[3], "r1"), "file": "part-1.jsonl"}
