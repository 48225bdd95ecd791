"""Streaming readers: BEIR/other JSONL and MS MARCO TSV, plain or gzip, file or stdin.

Every non-blank input line becomes either a Record or a Rejected with its reason, so a run can
account for each one. Memory stays flat: lines are read one at a time.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bridge.errors import BadInput

FORMATS = ("auto", "jsonl", "tsv")
MAX_ID_BYTES = 512  # OpenSearch refuses longer _id values


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    doc_id: str
    title: str
    text: str

    @property
    def passage(self) -> str:
        """What the encoder sees: title and text, as BEIR's dense baselines do."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    doc_id: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class Fields:
    """Which JSON keys hold the id, the text and the (optional) title."""

    id: str = "_id"
    text: str = "text"
    title: str | None = "title"


@dataclass(frozen=True)
class Shard:
    """Worker `index` of `count`: takes every count-th input line."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, value: str) -> Shard:
        try:
            index, count = (int(part) for part in value.split("/"))
        except ValueError:
            raise BadInput(
                f"--shard {value!r} is not I/N: write e.g. 0/4 for the first of 4."
            ) from None
        if count < 1 or not 0 <= index < count:
            raise BadInput(
                f"--shard {value!r} needs 0 <= I < N: write e.g. 0/4 for the first of 4."
            )
        return cls(index, count)

    def takes(self, line: int) -> bool:
        return (line - 1) % self.count == self.index


def read_records(
    source: str | Path,
    *,
    fmt: str = "auto",
    fields: Fields = Fields(),
    shard: Shard = Shard(),
    limit: int | None = None,
) -> Iterator[Record | Rejected]:
    """Yield one Record or Rejected per non-blank line of `source` ('-' is stdin)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    with _open(source) as stream:
        first = stream.peek(1)[:1] if hasattr(stream, "peek") else b""
        kind = _detect(source, fmt, first)
        parse = _parse_json if kind == "jsonl" else _parse_tsv
        for line_no, raw in enumerate(stream, 1):
            if limit is not None and line_no > limit:
                break
            if not shard.takes(line_no) or not raw.strip():
                continue
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Rejected(line_no, None, "line is not valid UTF-8")
                continue
            yield parse(line_no, line, fields)


def _open(source: str | Path) -> BinaryIO:
    if str(source) == "-":
        raw: BinaryIO = sys.stdin.buffer
    else:
        path = Path(source)
        if not path.is_file():
            raise BadInput(
                f"Input {str(source)!r} is not a file: give a corpus path or - for stdin."
            )
        raw = path.open("rb")
    buffered = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=buffered))  # type: ignore[arg-type]
    return buffered


def _detect(source: str | Path, fmt: str, first: bytes) -> str:
    if fmt != "auto":
        return fmt
    name = str(source).lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "jsonl" if first == b"{" else "tsv"


def _parse_json(line_no: int, line: str, fields: Fields) -> Record | Rejected:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return Rejected(line_no, None, f"not valid JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return Rejected(line_no, None, "not a JSON object")
    raw_id = obj.get(fields.id)
    title = obj.get(fields.title) if fields.title else None
    return _record(line_no, raw_id, title, obj.get(fields.text), fields)


def _parse_tsv(line_no: int, line: str, fields: Fields) -> Record | Rejected:
    parts = line.split("\t", 1)
    if len(parts) != 2:
        return Rejected(line_no, None, "not a TSV line (expected id<TAB>passage)")
    return _record(line_no, parts[0], None, parts[1], fields)


def _record(
    line_no: int, raw_id: object, title: object, text: object, fields: Fields
) -> Record | Rejected:
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return Rejected(line_no, None, f"missing or invalid id field {fields.id!r}")
    doc_id = str(raw_id).strip()
    if not doc_id:
        return Rejected(line_no, None, f"missing or invalid id field {fields.id!r}")
    if len(doc_id.encode()) > MAX_ID_BYTES:
        return Rejected(line_no, doc_id[:80], f"id longer than {MAX_ID_BYTES} bytes")
    if text is None:
        return Rejected(line_no, doc_id, f"missing text field {fields.text!r}")
    if not isinstance(text, str):
        return Rejected(line_no, doc_id, f"text field {fields.text!r} is not a string")
    if not text.strip():
        return Rejected(line_no, doc_id, "empty text")
    if title is not None and not isinstance(title, str):
        return Rejected(line_no, doc_id, f"title field {fields.title!r} is not a string")
    return Record(line_no, doc_id, (title or "").strip(), text)
