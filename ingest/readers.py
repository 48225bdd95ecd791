"""Streaming readers: BEIR/other JSONL and MS MARCO TSV, plain or gzip, file or stdin.

Every non-blank input line becomes either a Record or a Rejected with its reason, so a run can
account for each one. Memory stays flat: lines are read one at a time, and a line longer than
MAX_LINE_BYTES is rejected without being held. The input is opened and its format decided when
`read_records` is called, so a wrong path or an unusable file is reported before anything else
happens.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from bridge.errors import BadInput

FORMATS = ("auto", "jsonl", "tsv")
MAX_ID_BYTES = 512  # OpenSearch refuses longer _id values
MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer line is rejected unread: no record needs more
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # also the start of the UTF-32 marks
# What a truncated or damaged gzip stream raises while it is being read.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    doc_id: str
    title: str
    text: str
    file: str | None = None  # the input it came from, when a run reads several (line is its own)

    @property
    def passage(self) -> str:
        """What the encoder sees: title and text, as BEIR's dense baselines do."""
        return f"{self.title} {self.text}" if self.title else self.text

    @property
    def digest(self) -> str:
        """A short fingerprint of title and text: tells this record from another under its id."""
        data = f"{self.title}\0{self.text}".encode()
        return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    doc_id: str | None
    reason: str
    file: str | None = None


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

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class RecordStream:
    """The records of one opened input, in line order; iterate once.

    `nonblank_lines` counts every non-blank line seen so far, whichever shard takes it, so that
    an input with no record at all can be told from a shard that got none.
    """

    def __init__(
        self,
        source: str | Path,
        handles: list[BinaryIO],
        lines: Iterator[tuple[int, bytes | None]],
        fmt: str,
        fields: Fields,
        shard: Shard,
        limit: int | None,
    ) -> None:
        self.source, self.format = str(source), fmt
        self.nonblank_lines = 0
        self._handles, self._lines = handles, lines
        self._fields, self._shard, self._limit = fields, shard, limit
        self._items = self._iterate()

    def __iter__(self) -> Iterator[Record | Rejected]:
        return self._items

    def __next__(self) -> Record | Rejected:
        return next(self._items)

    def _iterate(self) -> Iterator[Record | Rejected]:
        parse = _parse_json if self.format == "jsonl" else _parse_tsv
        try:
            for line_no, raw in self._lines:
                if self._limit is not None and line_no > self._limit:
                    break
                if raw is not None and not raw.removeprefix(UTF8_BOM).strip():
                    continue  # blank, or only a byte-order mark
                self.nonblank_lines += 1
                if not self._shard.takes(line_no):
                    continue
                if raw is None:
                    yield Rejected(line_no, None, f"line longer than {MAX_LINE_BYTES} bytes")
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Rejected(line_no, None, f"line is not valid UTF-8 (byte {exc.start + 1})")
                    continue
                # A byte-order mark (of the file, or of a file concatenated into it) is no text.
                line = line.removeprefix("\ufeff").rstrip("\r\n")
                if self.format == "tsv" and self.nonblank_lines == 1 and _tsv_header(line):
                    yield Rejected(line_no, None, f"a header line ({line!r}), not a passage")
                    continue
                yield parse(line_no, line, self._fields)
        except _Corrupt as exc:
            if self._shard.takes(exc.line):  # one worker reports it, not each of them
                self.nonblank_lines += 1
                yield Rejected(exc.line, None, exc.reason)
        finally:
            self.close()

    def close(self) -> None:
        """Close the input (stdin stays open)."""
        for handle in self._handles:
            handle.close()


def read_records(
    source: str | Path,
    *,
    fmt: str = "auto",
    fields: Fields = Fields(),
    shard: Shard = Shard(),
    limit: int | None = None,
) -> RecordStream:
    """Open `source` ('-' is stdin) and decide its format now; iterating yields one Record or
    Rejected per non-blank line (of this shard). BadInput when the input cannot be read at all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    stream, handles = _open(source)
    lines = _lines(stream)
    head: list[tuple[int, bytes | None]] = []
    try:
        for item in lines:  # up to the first non-blank line, which tells the format
            head.append(item)
            if item[1] is None or item[1].removeprefix(UTF8_BOM).strip():
                break
    except _Corrupt as exc:
        for handle in handles:
            handle.close()
        raise BadInput(
            f"Input {str(source)!r} cannot be read ({exc.reason}): check the file."
        ) from None
    first = next((raw for _, raw in reversed(head) if raw is not None), b"")
    kind = _detect(source, fmt, first.removeprefix(UTF8_BOM).lstrip())
    if kind == "jsonl":
        _check_json_lines(source, first.removeprefix(UTF8_BOM).strip())
    return RecordStream(source, handles, chain(head, lines), kind, fields, shard, limit)


class _Corrupt(Exception):
    """The input stream broke off: a truncated or damaged gzip file."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def _open(source: str | Path) -> tuple[BinaryIO, list[BinaryIO]]:
    """The stream to read lines from, and what to close after it (never stdin)."""
    if str(source) == "-":
        raw: BinaryIO = sys.stdin.buffer
        owned: list[BinaryIO] = []
    else:
        path = Path(source)
        if not path.is_file():
            raise BadInput(
                f"Input {str(source)!r} is not a file: give a corpus path or - for stdin."
            )
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise BadInput(
                f"Input {str(source)!r} cannot be opened ({exc.strerror}): check its permissions."
            ) from None
        owned = [raw]
    stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    start = stream.peek(4)[:4]
    if start[:2] == GZIP_MAGIC:
        unzipped = io.BufferedReader(_Gunzip(stream))
        return unzipped, [unzipped, *owned]  # type: ignore[list-item]
    if start[:2] in UTF16_BOMS:
        for handle in owned:
            handle.close()
        raise BadInput(
            f"Input {str(source)!r} is UTF-16 or UTF-32 encoded: convert it to UTF-8 "
            "(e.g. iconv -f UTF-16 -t UTF-8)."
        )
    return stream, owned


class _Gunzip(io.RawIOBase):
    """A gzip stream (of one or more members) decompressed as it is read.

    Unlike `gzip.GzipFile` under a buffered reader, a truncated or damaged stream gives up every
    byte that could be recovered before it raises, so no complete line before the damage is lost.
    """

    CHUNK = 8192  # compressed bytes per step: a damaged step loses at most its own output

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._inflate = zlib.decompressobj(wbits=31)
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            if not self._step():
                return 0
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        self._out = self._out[size:]
        return size

    def _step(self) -> bool:
        """Decompress a little more into `_out`; False at the clean end of the stream."""
        inflate = self._inflate
        if inflate.eof:  # a member ended: another may follow
            rest = inflate.unused_data or self._source.read(self.CHUNK)
            if not rest.strip(b"\0"):  # padding with zeros is allowed after the last member
                return bool(rest) and self._step_padding(rest)
            if not rest.startswith(GZIP_MAGIC[: len(rest)]):
                raise gzip.BadGzipFile("trailing garbage after the compressed data")
            self._inflate = zlib.decompressobj(wbits=31)
            self._out = self._inflate.decompress(rest, 1 << 20)
            return True
        data = inflate.unconsumed_tail or self._source.read(self.CHUNK)
        if not data:
            raise EOFError("the compressed data ends before its end marker")
        self._out = inflate.decompress(data, 1 << 20)
        return True

    def _step_padding(self, zeros: bytes) -> bool:
        while zeros := self._source.read(self.CHUNK):
            if zeros.strip(b"\0"):
                raise gzip.BadGzipFile("trailing garbage after the compressed data")
        return False


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line; None for a line longer than MAX_LINE_BYTES (skipped)."""
    line_no = 0
    try:
        while raw := stream.readline(MAX_LINE_BYTES + 1):
            line_no += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # the rest of the over-long line, read and dropped
                yield line_no, None
            else:
                yield line_no, raw
    except GZIP_ERRORS as exc:
        detail = str(exc).rstrip(".") or type(exc).__name__
        where = f"after line {line_no}" if line_no else "at its start"
        raise _Corrupt(
            line_no + 1,
            f"compressed input is damaged or truncated {where} ({detail}); the rest was not read",
        ) from None


def _detect(source: str | Path, fmt: str, first: bytes) -> str:
    if fmt != "auto":
        return fmt
    name = str(source).lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "jsonl" if first[:1] in (b"{", b"[") else "tsv"


_ARRAY_START = re.compile(rb"\[\s*(\{|$)")


def _check_json_lines(source: str | Path, first: bytes) -> None:
    """Refuse a JSON document that is not JSON Lines: every one of its lines would be rejected."""
    if _ARRAY_START.match(first):
        raise BadInput(
            f"Input {str(source)!r} is a JSON array, not JSON Lines (one object per line): "
            f"convert it with `jq -c '.[]' FILE > FILE.jsonl`."
        )
    if first == b"{":
        raise BadInput(
            f"Input {str(source)!r} holds pretty-printed JSON, not JSON Lines (one object per "
            f"line): convert it with `jq -c . FILE > FILE.jsonl`."
        )


def _parse_json(line_no: int, line: str, fields: Fields) -> Record | Rejected:
    try:
        obj = json.loads(line)
    except RecursionError:
        return Rejected(line_no, None, "not valid JSON (nested too deeply)")
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        return Rejected(line_no, None, f"not valid JSON ({getattr(exc, 'msg', exc)})")
    if not isinstance(obj, dict):
        return Rejected(line_no, None, f"not a JSON object (got {_json_type(obj)})")
    title = obj.get(fields.title) if fields.title else None
    return _record(line_no, obj.get(fields.id), title, obj.get(fields.text), fields)


def _parse_tsv(line_no: int, line: str, fields: Fields) -> Record | Rejected:
    parts = line.split("\t")
    if len(parts) != 2:
        # A passage with a tab in it, or another layout: gluing the columns would be a guess.
        return Rejected(
            line_no,
            _printable(parts[0]) if len(parts) > 2 else None,
            f"expected 2 tab-separated columns (id, passage), got {len(parts)}",
        )
    return _record(line_no, parts[0], None, parts[1], fields)


TSV_ID_HEADERS = frozenset({"id", "_id", "pid", "docid", "doc_id", "did", "passage_id", "qid"})
TSV_TEXT_HEADERS = frozenset({"text", "passage", "body", "content", "contents", "document"})


def _tsv_header(line: str) -> bool:
    """Whether a TSV's first line names its columns (`id<TAB>text`) instead of holding one."""
    parts = [part.strip().lower() for part in line.split("\t")]
    return len(parts) == 2 and parts[0] in TSV_ID_HEADERS and parts[1] in TSV_TEXT_HEADERS


def _record(
    line_no: int, raw_id: object, title: object, text: object, fields: Fields
) -> Record | Rejected:
    if raw_id is None:
        return Rejected(line_no, None, f"missing id field {fields.id!r}")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        return Rejected(
            line_no,
            None,
            f"id field {fields.id!r} must be a string or an integer, not {_json_type(raw_id)}",
        )
    doc_id = str(raw_id)  # as given: trimming could make it another record's id
    if not doc_id.strip():
        return Rejected(line_no, None, f"blank id in field {fields.id!r}")
    if not _valid_unicode(doc_id):
        return Rejected(line_no, _printable(doc_id), "id is not valid Unicode (a lone surrogate)")
    if len(doc_id.encode()) > MAX_ID_BYTES:
        return Rejected(line_no, doc_id[:80], f"id longer than {MAX_ID_BYTES} bytes")
    if text is None:
        return Rejected(line_no, doc_id, f"missing text field {fields.text!r}")
    if not isinstance(text, str):
        return Rejected(
            line_no,
            doc_id,
            f"text field {fields.text!r} is not a string but {_json_type(text)}",
        )
    if not _valid_unicode(text):
        return Rejected(line_no, doc_id, "text is not valid Unicode (a lone surrogate)")
    if not text.strip():
        return Rejected(line_no, doc_id, "empty text")
    if title is not None:
        if not isinstance(title, str):
            return Rejected(
                line_no,
                doc_id,
                f"title field {fields.title!r} is not a string but {_json_type(title)}",
            )
        if not _valid_unicode(title):
            return Rejected(line_no, doc_id, "title is not valid Unicode (a lone surrogate)")
    return Record(line_no, doc_id, (title or "").strip(), text)


def _valid_unicode(text: str) -> bool:
    """False for text no UTF-8 can carry: lone surrogates, e.g. from a `\\ud83d` JSON escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """Text safe to write into the rejects file: lone surrogates as escapes, at most 80 chars."""
    return text[:80].encode("utf-8", "backslashreplace").decode("utf-8")


def _json_type(value: object) -> str:
    """`an array`, `a string`, `null`...: what a JSON value is, for a reason."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")
