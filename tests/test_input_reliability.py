"""Evaluation and inference inputs: a bad benchmark row or input line is skipped with its reason."""

from __future__ import annotations

import json
import logging

import pytest

from medsft import infer
from medsft.chat_format import assistant_content
from medsft.engine import Engine, Generation
from medsft.mcq import BenchmarkFormatError, SkippedRow, load_benchmark, load_questions, parse_answer

OPTIONS = {"A": "表皮", "B": "真皮", "C": "黏膜上皮", "D": "肌层", "E": "腺上皮"}


def question_row(answer, question: str = "属于上皮组织的是") -> dict:
    return {
        "question": question,
        "options": "(A) 表皮\n(B) 真皮\n(C) 黏膜上皮\n(D) 肌层\n(E) 腺上皮",
        "answer": answer,
    }


# --- 12. gold answers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "letters"),
    [("C", "C"), ("(C)", "C"), ("(ACE)", "ACE"), ("A,C", "AC"), ("A、C", "AC"), ("c", "C"), ("（Ｃ）", "C"),
     (["A", "C"], "AC"), (" B. ", "B")],
)  # fmt: skip
def test_gold_answers_written_as_letters_are_read(answer, letters):
    assert parse_answer(answer, OPTIONS) == letters


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(None, "missing"), ("Answer: B", "not option letters"), ("NONE", "not option letters"), ("", "empty"),
     ("F", "not among the options"), ("(AF)", "not among the options"), (2, "not option letters"),
     (["A", 2], "not option letters"), ("答案：C", "not option letters"), ("B or C", "not option letters")],
)  # fmt: skip
def test_gold_answers_that_are_not_letters_of_the_options_are_refused(answer, reason):
    with pytest.raises(BenchmarkFormatError, match=reason):
        parse_answer(answer, OPTIONS)


def test_bad_benchmark_rows_are_skipped_with_their_reason(tmp_path, caplog):
    path = tmp_path / "mine.jsonl"
    lines = [
        json.dumps(question_row("(ACE)"), ensure_ascii=False).encode(),
        b'{"question": "broken", ',
        json.dumps(question_row(None), ensure_ascii=False).encode(),
        b"[1, 2]",
        json.dumps(question_row("Answer: B"), ensure_ascii=False).encode(),
        b'{"question": "\xff\xfe", "options": "(A) x\\n(B) y", "answer": "A"}',
        json.dumps(question_row("B", question=""), ensure_ascii=False).encode(),
        json.dumps(question_row("D"), ensure_ascii=False).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    skipped: list[SkippedRow] = []
    with caplog.at_level(logging.WARNING, logger="medsft"):
        questions = load_questions(path, skipped=skipped)
    assert [(q.index, q.answer) for q in questions] == [(0, "ACE"), (7, "D")]
    reasons = {row.row: row.reason for row in skipped}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "line 2 is not JSON" in reasons[1]
    assert "answer is missing" in reasons[2]
    assert "expected an object, got list" in reasons[3]
    assert "'Answer: B' is not option letters" in reasons[4]
    assert "line 6 is not UTF-8" in reasons[5]
    assert "question is empty" in reasons[6]
    assert all(row.file == str(path) for row in skipped)
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 6 and all("skipped" in line and "mine.jsonl" in line for line in logged)


def test_a_file_with_no_usable_question_is_one_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([question_row(None), question_row("Z")], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"bad.json, row 0: answer is missing .*2 rows skipped"):
        load_questions(path)


def test_skipped_rows_keep_question_indexes_unique_across_files(tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(
        "\n".join(json.dumps(question_row(a), ensure_ascii=False) for a in ("A", None, "B")), encoding="utf-8"
    )
    second.write_text(json.dumps(question_row("C"), ensure_ascii=False), encoding="utf-8")
    skipped: list[SkippedRow] = []
    questions = load_benchmark([first, second], skipped=skipped)
    assert [(q.source, q.index) for q in questions] == [("first", 0), ("first", 2), ("second", 3)]
    assert [(row.file, row.row) for row in skipped] == [(str(first), 1)]


# --- 13. infer --file --------------------------------------------------------------------------------------


class EchoGenerator:
    """Stands in for a loaded model: answers every question with its own text."""

    backend, device, model_dir, max_context = "fake", "cpu", None, 4096
    length_problem = Engine.length_problem

    def close(self) -> None:
        pass

    def count_prompt_tokens(self, conversation, enable_thinking: bool) -> int:
        return sum(len(message["content"]) for message in conversation)

    def generate(self, conversations, settings, batch_size: int = 1) -> list[Generation]:
        return [self.echo(conversation[-1]["content"]) for conversation in conversations]

    @staticmethod
    def echo(question: str) -> Generation:
        return Generation(
            reasoning="想一想",
            answer=question,
            well_formed=True,
            truncated=False,
            reasoning_tokens=3,
            answer_tokens=len(question),
            text=assistant_content("想一想", question),
        )


def test_an_invalid_utf8_line_is_one_error_record_and_the_rest_is_answered(tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "load_engine", lambda *args, **kwargs: EchoGenerator())
    source = tmp_path / "questions.jsonl"
    source.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps({"id": 1, "question": "头痛怎么办？"}, ensure_ascii=False).encode()
        + b"\n"
        + b'{"id": 2, "question": "\xff\xfe bad"}\n'
        + b'{"id": 3, "question": "lone \\ud800 surrogate"}\n'
        + json.dumps({"id": 4, "question": "发烧怎么办？"}, ensure_ascii=False).encode()
        + b"\n"
    )
    output = tmp_path / "answers.jsonl"
    assert infer.main(["--model", "fake", "--file", str(source), "--output", str(output)]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [record["line"] for record in records] == [1, 2, 3, 4]
    assert records[0]["answer"] == "头痛怎么办？" and records[3]["answer"] == "发烧怎么办？"
    assert "not UTF-8" in records[1]["error"] and "answer" not in records[1]
    assert "surrogate" in records[2]["error"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-new-tokens", "-5", "at least 1"),
        ("--max-new-tokens", "0", "at least 1"),
        ("--max-new-tokens", "2.5", "whole number"),
        ("--temperature", "-1", "at least 0"),
        ("--temperature", "nan", "at least 0"),
        ("--top-p", "0", "above 0"),
        ("--top-p", "1.5", "at most 1"),
        ("--top-k", "-1", "at least 0"),
        ("--batch-size", "0", "at least 1"),
    ],
)
def test_generation_flags_out_of_range_are_argument_errors(flag, value, message, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(infer, "load_engine", no_model)
    with pytest.raises(SystemExit) as exit_:
        infer.main(["-q", "头痛怎么办？", flag, value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("medsft infer: error: argument") and flag in error and message in error
