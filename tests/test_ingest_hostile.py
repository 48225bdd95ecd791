"""Hostile input through `dotbridge ingest` on a real node: every good record indexed, every bad
one in the rejects file with its reason, counts that add up, the right exit status, and never a
traceback. An input that cannot be read at all is refused with one sentence and creates nothing.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from dataclasses import dataclass, field

import pytest

from tests.ingest_helpers import run_cli, summary_counts

pytestmark = pytest.mark.integration


def j(doc_id: object, text: object = "a passage", **more: object) -> str:
    return json.dumps({"_id": doc_id, "text": text, **more})


def lines(*items: str, end: str = "\n") -> bytes:
    return "".join(item + end for item in items).encode()


@dataclass
class Case:
    data: bytes
    indexed: set[str] = field(default_factory=set)  # the ids the index must hold afterwards
    rejected: dict[int, str] = field(default_factory=dict)  # line -> part of its reason
    refused: str | None = None  # the one sentence, when the input is refused as a whole
    name: str = "corpus.jsonl"  # "-": the data comes on stdin
    args: tuple[str, ...] = ()


def truncated_gzip() -> Case:
    data = gzip.compress(lines(*(j(f"d{i}", "word " * 40) for i in range(300))))
    cut = data[: len(data) // 2]
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    return Case(
        cut,
        indexed={f"d{i}" for i in range(complete)},
        rejected={complete + 1: "damaged or truncated"},
        name="corpus.jsonl.gz",
    )


def binary_junk() -> Case:
    data = random.Random(12).randbytes(40_000)
    bad = [n for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    if not data.endswith(b"\n"):
        data += b"\n"
    return Case(data, rejected=dict.fromkeys(bad, ""), name="junk.bin")


CASES: dict[str, Case] = {
    "utf8-bom": Case(b"\xef\xbb\xbf" + lines(j("a"), j("b")), {"a", "b"}),
    "stdin-bom-blank-lines": Case(
        b"\xef\xbb\xbf\n\n" + lines(j("a"), j("b")), {"a", "b"}, name="-"
    ),
    "stdin-tsv-blank-first": Case(b"\n1\tone\n2\ttwo\n", {"1", "2"}, name="-"),
    "stdin-gzip": Case(gzip.compress(lines(j("a"), j("b"))), {"a", "b"}, name="-"),
    "crlf-jsonl": Case(lines(j("a"), j("b"), end="\r\n"), {"a", "b"}),
    "crlf-tsv": Case(b"1\tone\r\n2\ttwo\r\n", {"1", "2"}, name="c.tsv"),
    "tsv-3-and-4-columns": Case(
        b"1\tok\n2\ta title\ttext\n3\turl\ttitle\tbody\n4\tfine\n",
        {"1", "4"},
        {2: "expected 2 tab-separated columns (id, passage), got 3", 3: "got 4"},
        name="c.tsv",
    ),
    "tsv-blank-id-and-text": Case(
        b"\tno id\n1\t\n2\t  \n3\tok\n",
        {"3"},
        {1: "blank id", 2: "empty text", 3: "empty text"},
        name="c.tsv",
    ),
    "lone-surrogates": Case(
        lines(
            '{"_id": "x\\ud83d", "text": "t"}',
            '{"_id": "t1", "text": "cut \\ud83d emoji"}',
            '{"_id": "t2", "title": "\\udc00", "text": "t"}',
            '{"_id": "ok", "text": "whole \\ud83d\\ude00 emoji"}',
        ),
        {"ok"},
        {1: "id is not valid Unicode", 2: "text is not valid Unicode", 3: "title is not valid"},
    ),
    "ids-with-spaces": Case(
        lines(j(" a"), j("a"), j("a "), j("   ")), {" a", "a", "a "}, {4: "blank id"}
    ),
    "invalid-utf8": Case(
        lines(j("a")) + b'{"_id": "b", "text": "\xff\xfe"}\n' + lines(j("c")),
        {"a", "c"},
        {2: "not valid UTF-8"},
    ),
    "nul-bytes": Case(
        lines('{"_id": "raw", "text": "a\x00b"}', j("escaped", "a\u0000b"))
        + b"n\x00\tnul in tsv\n",
        {"escaped"},
        {1: "Invalid control character", 3: "not valid JSON"},
    ),
    "truncated-gzip": truncated_gzip(),
    "corrupt-gzip": Case(
        b"\x1f\x8b" + bytes(range(256)) * 8, refused="cannot be read", name="c.jsonl.gz"
    ),
    "empty-file": Case(b"", refused="holds no records"),
    "only-blank-lines": Case(b"\n   \n\t\n\r\n", refused="holds no records"),
    "non-object-json": Case(
        lines(j("a"), "[1, 2]", '"text"', "42", "null", "true"),
        {"a"},
        {n: "not a JSON object" for n in range(2, 7)},
    ),
    "wrong-types": Case(
        lines(
            j(1.5),
            j(True),
            j(["a"]),
            j({"k": 1}),
            j(None),
            j("t1", 7),
            j("t2", ["x"]),
            j("t3", {"x": 1}),
            j("t4", None),
            j("t5", "x", title=5),
            j("t6", "x", title=["t"]),
            j("ok1", "x", title=None),
            j(7, "numeric id"),
            j(-3, "negative id"),
            j("ok2", "x", extra={"ignored": [1, 2]}),
        ),
        {"ok1", "7", "-3", "ok2"},
        {
            1: "not a number",
            2: "not a boolean",
            3: "not an array",
            4: "not an object",
            5: "missing id",
            6: "not a string but a number",
            7: "not a string but an array",
            8: "not a string but an object",
            9: "missing text",
            10: "title field",
            11: "title field",
        },
    ),
    "long-ids": Case(
        lines(j("x" * 512), j("y" * 513), j("é" * 256), j("é" * 257)),
        {"x" * 512, "é" * 256},
        {2: "longer than 512 bytes", 4: "longer than 512 bytes"},
    ),
    "huge-lines": Case(
        lines(j("big", "word " * 200_000), j("huge", "x" * 9_000_000), j("after")),
        {"big", "after"},
        {2: "line longer than"},
    ),
    "binary-junk": binary_junk(),
    "json-array-file": Case(
        b'[{"_id": "a", "text": "x"},\n {"_id": "b", "text": "y"}]\n',
        refused="is a JSON array",
        name="c.json",
    ),
    "pretty-json": Case(b'{\n  "_id": "a",\n  "text": "x"\n}\n', refused="pretty-printed JSON"),
    "utf16": Case(lines(j("a")).decode().encode("utf-16"), refused="UTF-16"),
    "duplicate-ids": Case(
        lines(j("a"), j("a"), j("a", "other text"), j("b")),
        {"a", "b"},
        {
            2: "duplicate id in input (line 1 holds it)",
            3: "duplicate id in input (line 1 holds it)",
        },
    ),
    "deep-nesting-and-huge-number": Case(
        lines(
            j("a"),
            "[" * 100_000,
            '{"_id": ' + "9" * 5000 + ', "text": "x"}',
            '{"_id": "n", "text": NaN}',
        ),
        {"a"},
        {2: "nested too deeply", 3: "not valid JSON", 4: "not a string"},
    ),
    "line-separators-in-json": Case(
        lines('{"_id": "ls", "text": "one\u2028two\u2029three\x85four"}'), {"ls"}
    ),
    "bom-mid-file": Case(lines(j("a")) + b"\xef\xbb\xbf" + lines(j("b")), {"a", "b"}),
    "tsv-lines-in-jsonl": Case(lines(j("a"), "1\tpassage"), {"a"}, {2: "not valid JSON"}),
    "tsv-header-line": Case(
        lines("id\ttext", "1\tpassage one", "2\tpassage two"),
        {"1", "2"},
        {1: "a header line ('id\\ttext'), not a passage"},
        name="collection.tsv",
    ),
    "only-bad-lines": Case(
        lines("{broken", "}", "nope"), set(), {1: "not valid JSON", 2: "", 3: ""}
    ),
}


@pytest.mark.parametrize("case_name", list(CASES))
def test_hostile_input_through_the_cli(
    case_name, os_client, opensearch_settings, index_name, tiny_encoder, tmp_path
):
    case = CASES[case_name]
    rejects = tmp_path / "rejects.jsonl"
    if case.name == "-":
        source, stdin = "-", case.data
    else:
        source, stdin = tmp_path / case.name, None
        source.write_bytes(case.data)
    result = run_cli(
        opensearch_settings, source, index_name, tiny_encoder, "--rejects", rejects, input=stdin
    )
    # Never a traceback: either no exception, or click's exit with a sentence.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output

    if case.refused:
        assert result.exit_code == 1, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and case.refused in errors[0], result.output
        assert not os_client.indices.exists(index=index_name)  # nothing created
        assert not rejects.exists()
        return

    assert result.exit_code == (2 if case.rejected else 0), result.output
    read, indexed, rejected, present = summary_counts(result.output)
    assert (indexed, rejected, present) == (len(case.indexed), len(case.rejected), 0)
    assert read == indexed + rejected + present

    os_client.indices.refresh(index=index_name)
    hits = os_client.search(
        index=index_name, body={"size": 1000, "_source": ["doc_id"], "query": {"match_all": {}}}
    )["hits"]["hits"]
    assert {h["_id"] for h in hits} == case.indexed
    assert all(h["_source"]["doc_id"] == h["_id"] for h in hits)

    got = {}
    if rejects.exists():
        for line in rejects.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            assert entry["reason"], entry
            got[entry["line"]] = entry["reason"]
    assert sorted(got) == sorted(case.rejected)
    for line, part in case.rejected.items():
        assert part in got[line], (line, got[line])


@pytest.mark.parametrize(
    ("index", "problem"),
    [
        ("SciFact", "has upper-case letters, which OpenSearch and Elasticsearch refuse"),
        ("a/b", "contains '/'"),
        ("_hidden", "starts with '_'"),
        ("two words", "contains ' '"),
    ],
)
def test_an_index_name_the_cluster_refuses_is_one_sentence_before_anything_else(
    index, problem, os_client, opensearch_settings, tmp_path
):
    """Refused before the input is read, a model loaded (this one does not even exist) or the
    cluster asked: one sentence naming what is wrong, nothing created."""
    from click.testing import CliRunner

    from bridge.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(j("a") + "\n")
    args = ["ingest", str(corpus), "--index", index, "--model", str(tmp_path / "no-model")]
    result = CliRunner().invoke(main, args, env={"OPENSEARCH_URL": opensearch_settings.url})
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: Index name {index!r} {problem}"), line
    assert "--engine" not in line and "model" not in line
    assert not os_client.indices.exists(index=index.lower().replace("/", "-").strip("_"))
    assert not list(tmp_path.glob("*.rejects.jsonl"))
