"""Readers: every non-blank line becomes a Record or a Rejected with its reason."""

from __future__ import annotations

import gzip
import io
import json
import sys

import pytest

from bridge.errors import BadInput
from ingest.readers import Fields, Record, Rejected, Shard, read_records


def write_lines(path, lines, *, compress=False):
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_beir_jsonl_plain_and_gzip(tmp_path, compress):
    lines = [json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"text {i}"}) for i in range(5)]
    name = "corpus.jsonl.gz" if compress else "corpus.jsonl"
    out = list(read_records(write_lines(tmp_path / name, lines, compress=compress)))
    assert out == [Record(i + 1, f"d{i}", f"T{i}", f"text {i}") for i in range(5)]
    assert out[0].passage == "T0 text 0"


def test_msmarco_tsv_and_format_sniffing(tmp_path):
    path = write_lines(tmp_path / "collection", ["0\tfirst passage", "1\tsecond\twith tab"])
    out = list(read_records(path))
    assert out == [Record(1, "0", "", "first passage"), Record(2, "1", "", "second\twith tab")]
    assert out[0].passage == "first passage"


def test_custom_json_fields(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [json.dumps({"pid": 7, "body": "hello"})])
    out = list(read_records(path, fields=Fields(id="pid", text="body", title=None)))
    assert out == [Record(1, "7", "", "hello")]


def test_bad_lines_get_reasons(tmp_path):
    lines = [
        "{not json",
        "[1, 2]",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"_id": "a"}),
        json.dumps({"_id": "b", "text": "   "}),
        json.dumps({"_id": "c", "text": 42}),
        json.dumps({"_id": "x" * 600, "text": "long id"}),
        "",
        json.dumps({"_id": "ok", "text": "fine"}),
    ]
    path = write_lines(tmp_path / "bad.jsonl", lines)
    path.write_bytes(path.read_bytes() + b'{"_id": "u", "text": "\xff\xfe"}\n')
    out = list(read_records(path))
    reasons = [(o.line, o.reason) for o in out if isinstance(o, Rejected)]
    assert [line for line, _ in reasons] == [1, 2, 3, 4, 5, 6, 7, 10]
    assert "not valid JSON" in reasons[0][1]
    assert reasons[1][1] == "not a JSON object"
    assert "id field '_id'" in reasons[2][1]
    assert "missing text field 'text'" in reasons[3][1]
    assert reasons[4][1] == "empty text"
    assert "not a string" in reasons[5][1]
    assert "longer than 512 bytes" in reasons[6][1]
    assert "UTF-8" in reasons[7][1]
    assert [o for o in out if isinstance(o, Record)] == [Record(9, "ok", "", "fine")]


def test_tsv_without_tab_is_rejected(tmp_path):
    out = list(read_records(write_lines(tmp_path / "c.tsv", ["no tab here"])))
    assert out == [Rejected(1, None, "not a TSV line (expected id<TAB>passage)")]


def test_stdin(monkeypatch):
    data = gzip.compress(b'{"_id": "s1", "text": "from stdin"}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    assert list(read_records("-")) == [Record(1, "s1", "", "from stdin")]


def test_shards_partition_the_input(tmp_path):
    lines = [f"{i}\tp{i}" for i in range(10)]
    path = write_lines(tmp_path / "c.tsv", lines)
    parts = [[r.doc_id for r in read_records(path, shard=Shard(i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(str(i) for i in range(10))
    assert parts[0] == ["0", "3", "6", "9"]


def test_shard_and_input_errors(tmp_path):
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(BadInput, match="--shard .* e.g. 0/4"):
            Shard.parse(bad)
    with pytest.raises(BadInput, match="is not a file"):
        list(read_records(tmp_path / "missing.jsonl"))


def test_limit(tmp_path):
    path = write_lines(tmp_path / "c.tsv", [f"{i}\tp" for i in range(10)])
    assert len(list(read_records(path, limit=4))) == 4
