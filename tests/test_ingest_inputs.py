"""Several inputs in one run: files and glob patterns (gzip too) read in parallel blocks, every
record and reject naming its file and its line in that file; a real node for the runs."""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from bridge.errors import BadInput
from ingest.inputs import InputStream, expand_inputs, read_inputs
from ingest.pipeline import ingest_corpus
from ingest.readers import Fields, Record, Rejected, Shard, read_records
from tests.ingest_helpers import count, distinct_ids, run_cli, summary_counts


def write(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def doc(doc_id: str, text: str | None = None) -> str:
    return json.dumps({"_id": doc_id, "text": text or f"a passage about {doc_id}"})


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    """Three parts (one gzip) with bad lines, and one id in two parts."""
    return [
        write(tmp_path / "part-0.jsonl", [doc(f"a{i}") for i in range(40)] + ["{broken"]),
        write(
            tmp_path / "part-1.jsonl.gz",
            [doc(f"b{i}") for i in range(25)] + [json.dumps({"_id": "b-no-text"}), doc("a3")],
        ),
        write(tmp_path / "part-2.jsonl", ["", doc("c0"), "[1]", doc("c1")]),
    ]


def test_patterns_expand_to_sorted_files_and_refuse_what_cannot_be_meant(parts, tmp_path):
    names = [str(p) for p in parts]
    assert expand_inputs(str(tmp_path / "part-*")) == names
    assert expand_inputs([str(tmp_path / "part-[12]*"), names[0]]) == [names[1], names[2], names[0]]
    assert expand_inputs(f"{tmp_path}/./part-0.jsonl") == [names[0]]  # normalised
    for given, sentence in (
        ([str(tmp_path / "nothing-*.jsonl")], "No file matches"),
        ([names[0], f"{tmp_path}/../{tmp_path.name}/part-0.jsonl"], "is given twice"),
        (["-", names[0]], "Standard input (-) cannot be read together"),
        ([], "No input given"),
    ):
        with pytest.raises(BadInput, match=sentence.replace("(", r"\(").replace(")", r"\)")):
            expand_inputs(given)


def test_parallel_blocks_give_every_line_once_with_its_file_and_line(parts):
    names = [str(p) for p in parts]
    sequential = []
    for name in names:
        sequential += [(name, item) for item in read_records(name)]
    stream = InputStream(
        names, fmt="auto", fields=Fields(), shard=Shard(), limit=None, threads=3, block=4
    )
    items = list(stream)
    # The same lines, each once, tagged with its file; within a file, in its order.
    assert Counter((i.file, i.line, type(i)) for i in items) == Counter(
        (name, i.line, type(i)) for name, i in sequential
    )
    for name in names:
        mine = [i.line for i in items if i.file == name]
        assert mine == sorted(mine)
    rejected = {(i.file, i.line): i.reason for i in items if isinstance(i, Rejected)}
    assert rejected.keys() == {(names[0], 41), (names[1], 26), (names[2], 3)}
    assert rejected[names[0], 41].startswith("not valid JSON")
    assert rejected[names[1], 26] == "missing text field 'text'"
    assert rejected[names[2], 3] == "not a JSON object (got an array)"
    assert stream.nonblank_lines == sum(1 for _ in sequential)


def test_a_stream_left_early_stops_its_readers(tmp_path):
    names = [
        str(write(tmp_path / f"p{k}.jsonl", [doc(f"{k}-{i}") for i in range(500)]))
        for k in range(4)
    ]
    before = threading.active_count()
    stream = read_inputs(names)
    assert isinstance(stream, InputStream)
    assert isinstance(next(stream), Record)
    stream.close()
    assert threading.active_count() == before


def test_each_input_is_checked_before_anything_is_read(parts, tmp_path):
    array = tmp_path / "array.json"
    array.write_text('[{"_id": "x", "text": "y"}]\n')
    with pytest.raises(BadInput, match="is a JSON array"):
        read_inputs([str(parts[0]), str(array)])
    with pytest.raises(BadInput, match="is not a file"):
        read_inputs([str(parts[0]), str(tmp_path / "missing.jsonl")])


@pytest.mark.integration
def test_a_glob_run_names_file_and_line_in_rejects_and_resumes(
    os_client, index_name, tiny_encoder, parts, tmp_path
):
    rejects = tmp_path / "rejects.jsonl"

    def run():
        return ingest_corpus(
            str(tmp_path / "part-*"),
            client=os_client,
            index=index_name,
            encoder=tiny_encoder,
            rejects=rejects,
            progress=False,
        )

    stats = run()
    good = {f"a{i}" for i in range(40)} | {f"b{i}" for i in range(25)} | {"c0", "c1"}
    assert (stats.read, stats.indexed, stats.rejected, stats.already_present) == (71, 67, 4, 0)
    assert count(os_client, index_name) == distinct_ids(os_client, index_name) == len(good)
    names = [str(p) for p in parts]
    entries = {(r["file"], r["line"]): r for r in map(json.loads, rejects.read_text().splitlines())}
    assert {(names[0], 41), (names[1], 26), (names[2], 3)} < set(entries)
    assert len(entries) == 4
    # a3 is in two files: which was first is the cluster's decision; the other names it.
    copies = [key for key in ((names[0], 4), (names[1], 27)) if key in entries]
    assert len(copies) == 1
    holder = os_client.get(index=index_name, id="a3")["_source"]["ingest"]
    assert {(holder["file"], holder["line"]), copies[0]} == {(names[0], 4), (names[1], 27)}
    assert entries[copies[0]]["reason"] == (
        f"duplicate id in input (line {holder['line']} of {holder['file']} holds it)"
    )
    assert entries[copies[0]]["id"] == "a3"

    # The same run again: every good id already there (its file and line match), nothing lost.
    again = run()
    assert (again.read, again.indexed, again.rejected, again.already_present) == (71, 0, 4, 67)
    assert again.encoded == 0


@pytest.mark.integration
def test_the_cli_takes_several_inputs_and_a_pattern(
    opensearch_settings, index_name, tiny_encoder, parts, tmp_path
):
    result = run_cli(
        opensearch_settings,
        parts[0],
        index_name,
        tiny_encoder,
        str(tmp_path / "part-[12]*"),
        "--rejects",
        tmp_path / "r.jsonl",
    )
    assert result.exit_code == 2, result.output
    assert summary_counts(result.output) == (71, 67, 4, 0)
    missing = run_cli(opensearch_settings, tmp_path / "none-*.jsonl", index_name, tiny_encoder)
    assert missing.exit_code == 1
    assert "Error: No file matches" in missing.output and "Traceback" not in missing.output
