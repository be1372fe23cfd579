"""Reading row files: JSON Lines (the one lenient reader), JSON arrays or objects, and Parquet.

Every non-blank line or record becomes a SourceRow: its parsed value, or why it cannot be read (a
RowRejected with a stable reason code), so nothing is lost silently. The encoding comes from a byte-order mark
at the start of a file (UTF-8, UTF-16, UTF-32); without one, a file is UTF-8, decoded line by line. A file
that cannot be read at all is a DataError naming it and what it seems to hold instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.errors import MedsftError

# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
BYTE_ORDER_MARKS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # JSON text never holds a raw CR or LF, so any of them ends a row
TEXT_LINE_BREAK = re.compile(r"\r\n|\r|\n")
JSON_SPACE = re.compile(r"[ \t\n\r]*")

# The reject reasons a reader gives (the conversion rules add theirs, see medsft.conversion.REASONS).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"


class DataError(MedsftError):
    """The source cannot be read or converted as asked (clear message for the user)."""


class RowRejected(ValueError):
    """A row that cannot become a training example: reason code, detail, and token length if measured."""

    def __init__(self, reason: str, detail: str, tokens: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.tokens = reason, detail, tokens


@dataclass
class SourceRow:
    """One row of input: where it came from, its raw text, and its parsed value (None when unparseable)."""

    file: str
    line: int  # 1-based line of a JSONL file; 1-based record number of a .json list or a .parquet file
    split: str | None  # "train" / "val" when the source already has both splits
    raw: str
    value: Any = None
    error: RowRejected | None = None


class RepeatedKey(ValueError):
    """A JSON object that names one key twice: which value is meant cannot be told."""


def object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise RepeatedKey(f"key {repeated!r} appears twice in one object")
    return value


def parse_json_text(text: str) -> tuple[Any, RowRejected | None]:
    """(value, None), or (None, an invalid_json rejection) for text that is not JSON, cannot be held, or
    names a key twice in one object."""
    try:
        return json.loads(text, object_pairs_hook=object_without_repeated_keys), None
    except RecursionError:
        return None, RowRejected(INVALID_JSON, "nested too deeply to read")
    except ValueError as error:  # JSONDecodeError, or an integer with more digits than Python converts
        return None, RowRejected(INVALID_JSON, str(error))


def byte_order_mark(data: bytes) -> tuple[bytes, str] | None:
    return next(((mark, codec) for mark, codec in BYTE_ORDER_MARKS if data.startswith(mark)), None)


def decoded_lines(data: bytes, file: str) -> list[tuple[int, str, str | RowRejected]]:
    """(line number, raw text, text or why it is not text) of each non-blank line; CRLF, CR and LF all end a
    line. A byte-order mark counts only at the start of the file (anywhere else it is the character U+FEFF,
    which no JSON value starts with). UTF-8 is decoded line by line, so one bad line costs one row; a file
    with a UTF-16/UTF-32 byte-order mark is decoded whole."""
    mark = byte_order_mark(data)
    if mark and mark[1] != "utf-8":
        try:
            text = data[len(mark[0]) :].decode(mark[1])
        except UnicodeDecodeError as error:
            raise DataError(
                f"{file}: starts with a {mark[1].upper()} byte-order mark but is not valid {mark[1].upper()} "
                f"({error.reason} at byte {error.start + len(mark[0])}). Save it as UTF-8."
            ) from None
        lines = enumerate(TEXT_LINE_BREAK.split(text), start=1)
        return [(number, line, line) for number, line in lines if line.strip()]
    result: list[tuple[int, str, str | RowRejected]] = []
    for number, line_bytes in enumerate(LINE_BREAK.split(data[len(mark[0]) :] if mark else data), start=1):
        if not line_bytes.strip():
            continue
        try:
            text = line_bytes.decode("utf-8")
            result.append((number, text, text))
        except UnicodeDecodeError as error:
            raw = line_bytes.decode("utf-8", errors="backslashreplace")
            why = RowRejected(INVALID_UTF8, f"not UTF-8 ({error.reason} at byte {error.start})")
            result.append((number, raw, why))
    return result


def describe_undecodable(data: bytes) -> str:
    """Why a file with no JSON line is not JSON Lines: the encoding or content it seems to have."""
    head = data[:4096]
    for codec in ("utf-16-le", "utf-16-be"):
        text = data[: len(data) // 2 * 2].decode(codec, errors="replace")
        first_line = next((line for line in TEXT_LINE_BREAK.split(text) if line.strip()), "")
        if parse_json_text(first_line)[1] is None:
            return f"it is {codec.upper()} without a byte-order mark: save it as UTF-8"
    if b"\x00" in head:
        odd_nuls, even_nuls = head[1::2].count(0), head[0::2].count(0)
        if max(odd_nuls, even_nuls) > len(head) // 4 and min(odd_nuls, even_nuls) < len(head) // 16:
            return "it looks like UTF-16 without a byte-order mark (a NUL byte beside each character)"
        return "it holds NUL bytes: binary data, not text"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return (
            f"it is not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); it may be GBK or "
            "another legacy encoding"
        )
    if text.lstrip().startswith(("[", "{")):
        return "it looks like one JSON document spread over lines: a list of rows belongs in a .json file"
    return "it is text, but no line is a JSON value"


def jsonl_rows(data: bytes, file: str, split: str | None = None) -> list[SourceRow]:
    """The lenient JSON Lines reader: one row per non-blank line, a line that is not UTF-8 JSON a row with its
    rejection (invalid_utf8, invalid_json). Only an undecodable UTF-16/UTF-32 file is a DataError."""
    rows = []
    for number, raw, text in decoded_lines(data, file):
        if isinstance(text, RowRejected):
            rows.append(SourceRow(file, number, split, raw, error=text))
            continue
        value, error = parse_json_text(text)
        rows.append(SourceRow(file, number, split, raw, value=value, error=error))
    return rows


def refuse_no_json_line(rows: list[SourceRow], data: bytes, file: str) -> None:
    """A file in which no line is JSON is not JSON Lines: one error saying what it seems to be instead."""
    if rows and all(row.error for row in rows):
        raise DataError(
            f"{file}: no line is JSON, so it is not JSON Lines (one JSON object per line, UTF-8): "
            f"{describe_undecodable(data)}."
        )


def text_position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}, column {index - text.rfind(chr(10), 0, index)}"


def json_array_rows(text: str, file: str, split: str | None) -> list[SourceRow]:
    """Each element of a JSON array is a row (its raw text is its slice of the file); any syntax error is a
    DataError naming its line and column, since the elements after it cannot be told apart."""
    decoder = json.JSONDecoder(object_pairs_hook=object_without_repeated_keys)

    def broken(reason: str, index: int, record: int) -> DataError:
        return DataError(
            f"{file}: not a valid JSON array: {reason} at {text_position(text, index)} (record {record}). "
            "Fix the file, or write one JSON object per line (.jsonl)."
        )

    rows: list[SourceRow] = []
    index = JSON_SPACE.match(text).end() + 1  # after "["
    index = JSON_SPACE.match(text, index).end()
    if text.startswith("]", index):
        index += 1
    else:
        while True:
            record = len(rows) + 1
            try:
                value, end = decoder.raw_decode(text, index)
            except RecursionError:
                raise broken("a record nested too deeply to read", index, record) from None
            except RepeatedKey as error:
                raise broken(str(error), index, record) from None
            except json.JSONDecodeError as error:
                raise broken(error.msg, error.pos, record) from None
            except ValueError as error:  # an integer with more digits than Python converts
                raise broken(str(error).split(";")[0], index, record) from None
            rows.append(SourceRow(file, record, split, text[index:end], value=value))
            index = JSON_SPACE.match(text, end).end()
            if text.startswith(",", index):
                index = JSON_SPACE.match(text, index + 1).end()
                continue
            if text.startswith("]", index):
                index += 1
                break
            raise broken("expected ',' or ']' after a record", index, record)
    index = JSON_SPACE.match(text, index).end()
    if index < len(text):
        raise broken("extra data after the array", index, len(rows))
    return rows


def parquet_rows(path: Path, file: str, split: str | None) -> list[SourceRow]:
    try:
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    except Exception as error:  # ArrowInvalid, OSError …: whatever pyarrow raises, the file is unreadable
        raise DataError(
            f"{file}: not a readable Parquet file ({type(error).__name__}: {error}). A text file of rows "
            "needs a .jsonl or .json name."
        ) from None
    return [
        SourceRow(file, number, split, json.dumps(record, ensure_ascii=False, default=str), value=record)
        for number, record in enumerate(records, start=1)
    ]


def read_file_rows(path: Path, file: str, split: str | None) -> tuple[list[SourceRow], str]:
    """(rows, sha256 of the file). `.json`: a JSON array, one object, or else JSON Lines (as many hub
    ".json" files are)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{file}: cannot be read ({error.strerror}).") from None
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix == ".parquet":
        return parquet_rows(path, file, split), digest
    if path.suffix == ".json":
        mark = byte_order_mark(data)
        try:
            text = data[len(mark[0]) :].decode(mark[1]) if mark else data.decode("utf-8")
        except UnicodeDecodeError:
            text = ""  # read it line by line: each bad line is one reject
        if text.lstrip(" \t\r\n").startswith("["):
            return json_array_rows(text, file, split), digest
        whole, error = parse_json_text(text)
        if error is None and isinstance(whole, dict):  # one object, perhaps written over several lines
            return [SourceRow(file, 1, split, text.strip(), value=whole)], digest
    rows = jsonl_rows(data, file, split)
    refuse_no_json_line(rows, data, file)
    return rows, digest
