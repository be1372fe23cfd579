"""Letter extraction against a hand-graded corpus of answers, and the rules one by one."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medsft.answer_choice import Extraction, extract_choice
from medsft.chat_format import split_reasoning

CORPUS = Path(__file__).with_name("answer_corpus.jsonl")
REQUIRED_AGREEMENT = 0.97


def load_corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_covers_every_class():
    rows = load_corpus()
    kinds = Counter(row["kind"] for row in rows)
    assert len(rows) >= 150
    for kind in ("correction", "quoted", "negated", "hedge", "words", "phrasing", "english", "fullwidth"):
        assert kinds[kind] >= 5, kind
    for kind in ("formatted", "multi", "truncated", "nonanswer", "hypothetical", "long"):
        assert kinds[kind] >= 5, kind
    assert any(len(row["expected"]) > 1 for row in rows)
    assert any(any("a" <= char <= "z" for char in row["answer"]) for row in rows)
    assert all(set(row["expected"]) <= set(row["options"]) for row in rows)


def test_agreement_with_the_hand_graded_corpus():
    rows = load_corpus()
    disagreements = []
    missed = Counter()
    for row in rows:
        read = extract_choice(row["answer"], row["options"])
        if (read.letters or "") != row["expected"]:
            missed[row["set"]] += 1
            graded = row["expected"]
            disagreements.append(f"  [{row['kind']}] {row['answer']!r}: graded {graded!r}, read {read}")
    agreement = 1 - len(disagreements) / len(rows)
    print(f"\nletter extraction agrees with the graded corpus on {agreement:.1%} of {len(rows)} answers")
    for name, size in sorted(Counter(row["set"] for row in rows).items()):
        print(f"  {name} set: {size - missed[name]}/{size}")
    print("\n".join(disagreements) or "  no disagreements")
    assert agreement >= REQUIRED_AGREEMENT, "\n".join(disagreements)


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        ("答案是A？不对，重新考虑，应选C", "C", "statement"),
        ("A选项“答案是D”的说法错误，故选C", "C", "statement"),
        ("答案为C或D", None, "hedge between options"),
        ("答案是B和C中的B", "B", "statement"),
        ("A 型血患者最常见", None, "no option letter found"),
        ("C项正确，其余均错误。", "C", "verdict"),
        ("A正确，B正确，D正确，C错误。", None, "conflicting verdicts: ['A', 'B', 'D']"),
        ("(A) 错误；(B) 错误", None, "ambiguous letters: ['A', 'B']"),
        ("C. 非离子型", "C", "formatted"),
        ("答案：E", None, "invalid option 'E'"),
        ("", None, "empty answer"),
        ("答案：", None, "no option letter found"),
    ],
)
def test_reason_names_the_rule(answer, expected, reason):
    read = extract_choice(answer, "ABCD")
    assert (read.letters, read.reason) == (expected, reason)


def test_evidence_is_the_deciding_text():
    read = extract_choice("A项错误。\n答案：B\n更正：答案：D", "ABCD")
    assert read == Extraction("D", "statement", "答案:D")


def test_letters_are_sorted_and_deduplicated():
    assert extract_choice("答案：E、A、C、A", "ABCDE").letters == "ACE"


def test_multi_letters_on_a_single_answer_question_are_read_as_written():
    # whether several letters are allowed is the scorer's decision: "BC" simply does not equal "B"
    assert extract_choice("答案：B、C", "ABCD").letters == "BC"


def test_letters_in_the_reasoning_are_ignored():
    text = "<think>\n答案：A？不对，A是阳离子型。\n</think>\n\n非离子型更安全，答案：C"
    assert extract_choice(split_reasoning(text).answer, "ABCDE").letters == "C"
    truncated = "<think>\n我认为答案：A，再核对一下"  # reasoning never closed: no answer part
    assert extract_choice(split_reasoning(truncated).answer, "ABCDE") == Extraction(None, "empty answer")


def test_more_options_than_five():
    assert extract_choice("答案：H", "ABCDEFGH").letters == "H"
    assert extract_choice("答案：H", "ABCDE").letters is None


@pytest.mark.parametrize("valid", ["", "ABCK", "abcd"])
def test_bad_option_letters_are_refused(valid):
    with pytest.raises(ValueError, match="valid option letters"):
        extract_choice("答案：A", valid)


def test_long_answers_stay_fast():
    import time

    answer = "A项错误，B超提示胆囊结石，维生素B12正常，" * 400 + "答案：C"
    started = time.perf_counter()
    assert extract_choice(answer, "ABCD").letters == "C"
    assert time.perf_counter() - started < 2.0
