"""Readers: every non-blank line becomes a Record or a Rejected with its reason."""

from __future__ import annotations

import gzip
import io
import json
import sys
import zlib

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
    path = write_lines(tmp_path / "collection", ["0\tfirst passage", "1\tsecond passage"])
    out = list(read_records(path))
    assert out == [Record(1, "0", "", "first passage"), Record(2, "1", "", "second passage")]
    assert out[0].passage == "first passage"


def test_tsv_lines_with_three_or_four_columns_are_rejected_not_glued(tmp_path):
    lines = ["1\tgood passage", "2\ta title\tthe passage", "3\turl\ttitle\tbody", "4\tok"]
    out = list(read_records(write_lines(tmp_path / "c.tsv", lines)))
    assert out[0] == Record(1, "1", "", "good passage")
    assert out[1] == Rejected(2, "2", "expected 2 tab-separated columns (id, passage), got 3")
    assert out[2] == Rejected(3, "3", "expected 2 tab-separated columns (id, passage), got 4")
    assert out[3] == Record(4, "4", "", "ok")


@pytest.mark.parametrize("header", ["id\ttext", "pid\tpassage", "docid\tText", "\ufeff_id\ttext"])
def test_a_tsv_header_line_is_rejected_with_its_reason_not_indexed(tmp_path, header):
    path = write_lines(tmp_path / "c.tsv", ["", header, "0\tfirst passage", "id\ttext"])
    out = list(read_records(path))
    assert out[0] == Rejected(
        2, None, f"a header line ({header.lstrip(chr(0xFEFF))!r}), not a passage"
    )
    # Only the first line can be a header: later, `id<TAB>text` is a record like any other.
    assert out[1:] == [Record(3, "0", "", "first passage"), Record(4, "id", "", "text")]


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
    assert reasons[1][1] == "not a JSON object (got an array)"
    assert reasons[2][1] == "missing id field '_id'"
    assert "missing text field 'text'" in reasons[3][1]
    assert reasons[4][1] == "empty text"
    assert "not a string" in reasons[5][1]
    assert "longer than 512 bytes" in reasons[6][1]
    assert "UTF-8" in reasons[7][1]
    assert [o for o in out if isinstance(o, Record)] == [Record(9, "ok", "", "fine")]


def test_tsv_without_tab_is_rejected(tmp_path):
    out = list(read_records(write_lines(tmp_path / "c.tsv", ["no tab here"])))
    assert out == [Rejected(1, None, "expected 2 tab-separated columns (id, passage), got 1")]


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


# ---- hostile input (issue 12) ------------------------------------------------------------------


def good(doc_id, text="some text"):
    return json.dumps({"_id": doc_id, "text": text})


def test_utf8_bom_at_the_start_is_not_part_of_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (good("a") + "\n" + good("b") + "\n").encode())
    assert [r.doc_id for r in read_records(path)] == ["a", "b"]


@pytest.mark.parametrize(
    "prefix", [b"\xef\xbb\xbf", b"\n", b"\r\n  \n", b"\xef\xbb\xbf\n\n"], ids=repr
)
def test_stdin_jsonl_after_a_bom_or_blank_lines_is_read_as_jsonl(monkeypatch, prefix):
    data = prefix + (good("s1") + "\n" + good("s2") + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    stream = read_records("-")
    assert stream.format == "jsonl"
    assert [r.doc_id for r in stream if isinstance(r, Record)] == ["s1", "s2"]


def test_stdin_tsv_is_still_recognised(monkeypatch):
    data = b"\n7\tseven\n8\teight\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    assert list(read_records("-")) == [Record(2, "7", "", "seven"), Record(3, "8", "", "eight")]


def test_lone_surrogates_reject_the_record_not_the_run(tmp_path):
    lines = [
        '{"_id": "bad\\ud83did", "text": "fine"}',
        '{"_id": "t1", "text": "broken \\ud83d emoji"}',
        '{"_id": "t2", "title": "\\udc00", "text": "fine"}',
        '{"_id": "ok", "text": "a real emoji \\ud83d\\ude00"}',
    ]
    out = list(read_records(write_lines(tmp_path / "s.jsonl", lines)))
    assert [type(o).__name__ for o in out] == ["Rejected", "Rejected", "Rejected", "Record"]
    assert out[0].reason == "id is not valid Unicode (a lone surrogate)"
    json.dumps(out[0].doc_id).encode()  # safe to write into the rejects file
    assert out[1] == Rejected(2, "t1", "text is not valid Unicode (a lone surrogate)")
    assert out[2] == Rejected(3, "t2", "title is not valid Unicode (a lone surrogate)")
    assert out[3].text == "a real emoji \U0001f600"


def test_ids_are_kept_exactly_as_given(tmp_path):
    lines = [good(" a"), good("a"), good("a "), good("   "), "b \tpassage"]
    out = list(read_records(write_lines(tmp_path / "ids.jsonl", lines)))
    assert [getattr(o, "doc_id", None) for o in out[:3]] == [" a", "a", "a "]
    assert out[3] == Rejected(4, None, "blank id in field '_id'")
    tsv = list(read_records(write_lines(tmp_path / "ids.tsv", [" 1\tp", "1 \tq"])))
    assert [r.doc_id for r in tsv] == [" 1", "1 "]


def test_wrong_types_and_odd_json_are_rejected_with_their_reason(tmp_path):
    lines = [
        json.dumps({"_id": 1.5, "text": "x"}),
        json.dumps({"_id": True, "text": "x"}),
        json.dumps({"_id": ["a"], "text": "x"}),
        json.dumps({"_id": "n", "text": None}),
        json.dumps({"_id": "l", "text": ["x"]}),
        json.dumps({"_id": "t", "title": 5, "text": "x"}),
        json.dumps({"_id": "null-title", "title": None, "text": "x"}),
        '"just a string"',
        "[" * 100_000,
        '{"_id": ' + "9" * 5000 + ', "text": "x"}',
        "NaN",
        '{"_id": "nul", "text": "a\x00b"}',
        json.dumps({"_id": "esc-nul", "text": "a\u0000b"}),
    ]
    out = list(read_records(write_lines(tmp_path / "types.jsonl", lines)))
    reasons = {o.line: o.reason for o in out if isinstance(o, Rejected)}
    assert reasons[1] == "id field '_id' must be a string or an integer, not a number"
    assert reasons[2] == "id field '_id' must be a string or an integer, not a boolean"
    assert reasons[3] == "id field '_id' must be a string or an integer, not an array"
    assert reasons[4] == "missing text field 'text'"
    assert reasons[5] == "text field 'text' is not a string but an array"
    assert reasons[6] == "title field 'title' is not a string but a number"
    assert reasons[8] == "not a JSON object (got a string)"
    assert reasons[9] == "not valid JSON (nested too deeply)"
    assert reasons[10].startswith("not valid JSON (")
    assert reasons[11] == "not a JSON object (got a number)"
    assert reasons[12].startswith("not valid JSON (Invalid control character")
    records = [o for o in out if isinstance(o, Record)]
    assert records == [Record(7, "null-title", "", "x"), Record(13, "esc-nul", "", "a\x00b")]


def test_crlf_lines_and_a_huge_line(tmp_path, monkeypatch):
    import ingest.readers as readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "c.jsonl"
    huge = good("huge", "x" * 5000)
    path.write_bytes((good("a") + "\r\n" + huge + "\r\n" + good("b") + "\r\n").encode())
    out = list(read_records(path))
    assert out[0] == Record(1, "a", "", "some text")
    assert out[1] == Rejected(2, None, "line longer than 1000 bytes")
    assert out[2] == Record(3, "b", "", "some text")
    tsv = tmp_path / "c.tsv"
    tsv.write_bytes(b"1\tpassage one\r\n2\tpassage two\r\n")
    assert [r.text for r in read_records(tsv)] == ["passage one", "passage two"]


def test_truncated_gzip_keeps_what_came_before_and_rejects_the_rest(tmp_path):
    data = gzip.compress("".join(good(f"d{i}", "word " * 50) + "\n" for i in range(200)).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    out = list(read_records(path))
    records = [o for o in out if isinstance(o, Record)]
    # Every complete line the damaged stream still holds is a record (zlib as the reference).
    recoverable = zlib.decompressobj(wbits=31).decompress(data[: len(data) // 2])
    assert len(records) == recoverable.count(b"\n") > 0
    assert [r.doc_id for r in records] == [f"d{i}" for i in range(len(records))]
    last = out[-1]
    assert isinstance(last, Rejected) and "damaged or truncated" in last.reason
    assert last.line == len(out)  # one line number past the records read


def test_corrupt_gzip_at_its_start_is_refused_before_anything_is_read(tmp_path):
    path = tmp_path / "junk.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(BadInput, match="cannot be read .*damaged or truncated"):
        read_records(path)


def test_binary_junk_and_invalid_utf8_lines_are_rejected(tmp_path):
    path = tmp_path / "junk.tsv"
    path.write_bytes(b"1\tok\n\xff\xfe\x00garbage\x80\n2\tfine\n\x00\x01\x02\n")
    out = list(read_records(path))
    assert out[0] == Record(1, "1", "", "ok")
    assert out[1] == Rejected(2, None, "line is not valid UTF-8 (byte 1)")
    assert out[2] == Record(3, "2", "", "fine")
    assert out[3].reason == "expected 2 tab-separated columns (id, passage), got 1"


@pytest.mark.parametrize(
    "content",
    [
        '[{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}]\n',
        '[\n  {"_id": "a", "text": "x"},\n  {"_id": "b", "text": "y"}\n]\n',
    ],
    ids=["one-line", "pretty"],
)
def test_a_json_array_file_is_refused_with_one_sentence(tmp_path, content):
    path = tmp_path / "array.json"
    path.write_text(content)
    with pytest.raises(BadInput, match="is a JSON array, not JSON Lines"):
        read_records(path)


def test_pretty_printed_json_and_utf16_are_refused(tmp_path):
    pretty = tmp_path / "one.json"
    pretty.write_text('{\n  "_id": "a",\n  "text": "x"\n}\n')
    with pytest.raises(BadInput, match="pretty-printed JSON"):
        read_records(pretty)
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes((good("a") + "\n").encode("utf-16"))
    with pytest.raises(BadInput, match="UTF-16"):
        read_records(utf16)


def test_a_missing_path_fails_when_opened_not_when_iterated(tmp_path):
    with pytest.raises(BadInput, match="is not a file"):
        read_records(tmp_path / "typo.jsonl")  # no iteration needed


def test_empty_and_blank_inputs_have_no_nonblank_lines(tmp_path):
    for content in (b"", b"\n\n  \n", b"\xef\xbb\xbf\n"):
        path = tmp_path / "empty.jsonl"
        path.write_bytes(content)
        stream = read_records(path)
        assert list(stream) == [] and stream.nonblank_lines == 0
    lines = write_lines(tmp_path / "two.tsv", ["1\ta", "2\tb"])
    stream = read_records(lines, shard=Shard(2, 3))
    assert list(stream) == [] and stream.nonblank_lines == 2  # this shard just got none
