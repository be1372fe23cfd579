"""The one lenient JSON Lines reader (medsft.readers), as `medsft data` and the MCQ benchmark loader use it:
byte-order marks count at the start of a file only, UTF-16/UTF-32 files with a mark are decoded, and a line
that is not UTF-8 JSON is a row with its reason, never dropped."""

from __future__ import annotations

import json

import pytest

from medsft import mcq
from medsft.conversion import DataOptions
from medsft.data import prepare
from medsft.jsonl import read_jsonl
from medsft.mcq import BenchmarkFormatError, SkippedRow, load_questions
from medsft.readers import INVALID_JSON, INVALID_UTF8, DataError, jsonl_rows

ROWS = [{"question": "问题一", "n": 1}, {"question": "问题二", "n": 2}]
TEXT = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS)
ENCODINGS_WITH_A_MARK = {
    "utf-8": b"\xef\xbb\xbf",
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
    "utf-32-le": b"\xff\xfe\x00\x00",
    "utf-32-be": b"\x00\x00\xfe\xff",
}


@pytest.mark.parametrize("encoding", ENCODINGS_WITH_A_MARK)
def test_a_byte_order_mark_at_the_start_names_the_encoding(encoding):
    data = ENCODINGS_WITH_A_MARK[encoding] + TEXT.encode(encoding)
    rows = jsonl_rows(data, "rows.jsonl")
    assert [(row.line, row.value, row.error) for row in rows] == [(1, ROWS[0], None), (2, ROWS[1], None)]
    assert rows[0].raw == json.dumps(ROWS[0], ensure_ascii=False)  # the mark is not part of the row


def test_a_utf8_byte_order_mark_inside_the_file_is_text_and_its_line_a_reject():
    lines = [json.dumps(row, ensure_ascii=False).encode() for row in ROWS]
    data = b"\xef\xbb\xbf" + lines[0] + b"\n\xef\xbb\xbf" + lines[1] + b"\n"
    first, second = jsonl_rows(data, "joined.jsonl")
    assert first.value == ROWS[0] and first.error is None
    assert second.line == 2 and second.value is None and second.error.reason == INVALID_JSON
    assert "BOM" in second.error.detail and second.raw.startswith("\ufeff")


def test_a_line_that_is_not_utf8_is_one_rejected_row_with_where_it_breaks():
    data = b'{"question": "ok"}\n{"question": "\xff bad"}\n\n'
    good, bad = jsonl_rows(data, "rows.jsonl", split="train")
    assert good.value == {"question": "ok"} and good.split == "train"
    assert (bad.line, bad.error.reason) == (2, INVALID_UTF8)
    assert bad.error.detail == "not UTF-8 (invalid start byte at byte 14)"
    assert bad.raw == '{"question": "\\xff bad"}'


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32-le"])
def test_a_file_that_breaks_the_encoding_its_mark_names_is_one_error(encoding):
    data = ENCODINGS_WITH_A_MARK[encoding] + TEXT.encode(encoding) + b"\x00"  # a cut last character
    with pytest.raises(DataError, match=rf"^rows.jsonl: starts with a {encoding.upper()} byte-order mark"):
        jsonl_rows(data, "rows.jsonl")


def raw_row(question: str) -> dict:
    return {"question": question, "think": "想一想", "answer": "回答"}


def test_medsft_data_rejects_a_line_behind_an_inner_byte_order_mark(tmp_path):
    lines = [json.dumps(raw_row(q), ensure_ascii=False).encode() for q in ("问一", "问二", "问三")]
    source = tmp_path / "raw.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\n" + lines[1] + b"\n\xef\xbb\xbf" + lines[2] + b"\n")
    report = prepare(str(source), tmp_path / "out", DataOptions(max_length=None))
    assert report["rows"] == {"read": 3, "converted": 2, "rejected": 1}
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert (reject["line"], reject["reason"]) == (3, INVALID_JSON)


def question_row(answer: str) -> dict:
    return {"question": "属于上皮组织的是", "options": "(A) 表皮\n(B) 真皮\n(C) 肌层", "answer": answer}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-32-be"])
def test_benchmark_jsonl_files_read_their_byte_order_mark(tmp_path, encoding):
    text = "".join(json.dumps(question_row(a), ensure_ascii=False) + "\r\n" for a in ("A", "C"))
    path = tmp_path / "bench.jsonl"
    path.write_bytes(ENCODINGS_WITH_A_MARK[encoding] + text.encode(encoding))
    assert [q.answer for q in load_questions(path)] == ["A", "C"]


def test_benchmark_lines_behind_an_inner_mark_or_not_utf8_are_skipped_with_their_line(tmp_path):
    lines = [json.dumps(question_row(a), ensure_ascii=False).encode() for a in ("A", "B", "C")]
    path = tmp_path / "bench.jsonl"
    path.write_bytes(
        lines[0] + b"\n\xef\xbb\xbf" + lines[1] + b"\n" + lines[2].replace(b"A", b"\xff", 1) + b"\n"
    )
    skipped: list[SkippedRow] = []
    (question,) = load_questions(path, skipped=skipped)
    assert question.answer == "A"
    assert [row.row for row in skipped] == [1, 2]
    assert skipped[0].reason.startswith("line 2 is not JSON (Unexpected UTF-8 BOM")
    assert skipped[1].reason.startswith("line 3 is not UTF-8 (invalid start byte at byte ")


def test_a_benchmark_file_that_breaks_its_byte_order_mark_is_a_format_error(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_bytes(b"\xff\xfe" + json.dumps(question_row("A")).encode("utf-16-le") + b"\x00")
    with pytest.raises(BenchmarkFormatError, match="bench.jsonl: starts with a UTF-16-LE byte-order mark"):
        load_questions(path)
    assert mcq.jsonl_rows is jsonl_rows  # the benchmark loader reads JSON Lines with the same reader
