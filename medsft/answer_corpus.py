"""Hand-graded answer corpora, and how far the letter extraction agrees with them.

Two row schemas are read, one per line of a JSONL file:
- `{"answer", "options", "expected", "kind", "set"}` (tests/answer_corpus.jsonl);
- `{"id", "options", "multi", "response", "gold_reading", "class"}`.
`options` is the option letters ("ABCDE"), a list of option texts, or a {letter: text} mapping; the graded
reading is the letters a careful human reads, sorted, "" when the answer commits to none.

An answer is the model's whole output, think block included when there is one; it is graded exactly as the
evaluation grades a generation: its answer part (the text after `</think>`) is read, the reasoning only as
medsft.answer_choice's rule 12 allows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medsft.answer_choice import OPTION_LETTERS, Extraction, extract_choice
from medsft.chat_format import split_reasoning
from medsft.errors import MedsftError
from medsft.jsonl import iter_jsonl


class AnswerCorpusError(MedsftError):
    """A corpus file that cannot be read as hand-graded answers."""


@dataclass(frozen=True)
class GradedAnswer:
    id: str
    answer: str
    options: str  # the option letters
    graded: str  # the letters a careful human reads, sorted; "" for none
    kind: str  # the answer's class
    option_texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Disagreement:
    row: GradedAnswer
    read: Extraction


@dataclass(frozen=True)
class Agreement:
    total: int
    by_class: dict[str, tuple[int, int]]  # class -> (agreeing, total)
    disagreements: list[Disagreement]

    @property
    def share(self) -> float:
        return 1 - len(self.disagreements) / self.total if self.total else float("nan")

    @property
    def wrong_letters(self) -> int:
        """Disagreements that read letters the human did not: the worst kind, a wrong answer scored."""
        return sum(1 for d in self.disagreements if d.read.letters)


def _option_letters(options, where: str) -> tuple[str, dict[str, str]]:
    if isinstance(options, dict):
        texts = {str(key).strip().upper(): str(value) for key, value in options.items()}
    elif isinstance(options, list):
        texts = {OPTION_LETTERS[i]: str(value) for i, value in enumerate(options[: len(OPTION_LETTERS)])}
    elif isinstance(options, str) and options and set(options) <= set(OPTION_LETTERS):
        return options, {}
    else:
        raise AnswerCorpusError(f'{where}: `options` must be letters like "ABCDE", a list or a mapping')
    letters = "".join(sorted(texts))
    if not letters or not set(letters) <= set(OPTION_LETTERS):
        raise AnswerCorpusError(f"{where}: option letters must be A-J, got {letters!r}")
    return letters, texts


def _graded(value, where: str) -> str:
    if isinstance(value, list):
        value = "".join(str(letter) for letter in value)
    if value is None:
        value = ""
    if not isinstance(value, str) or not set(value.upper()) <= set(OPTION_LETTERS):
        raise AnswerCorpusError(f'{where}: the graded reading must be option letters or "", got {value!r}')
    return "".join(sorted(set(value.upper())))


def _row(raw: dict, where: str, number: int) -> GradedAnswer:
    if "response" in raw:  # {"id", "options", "multi", "response", "gold_reading", "class"}
        keys = ("response", "options", "gold_reading")
        answer_key, graded_key, kind_key = "response", "gold_reading", "class"
    else:  # {"answer", "options", "expected", "kind", "set"}
        keys = ("answer", "options", "expected")
        answer_key, graded_key, kind_key = "answer", "expected", "kind"
    missing = [key for key in keys if key not in raw]
    if missing:
        raise AnswerCorpusError(f"{where}: missing field {missing[0]!r}")
    if not isinstance(raw[answer_key], str):
        raise AnswerCorpusError(f"{where}: {answer_key!r} must be text")
    letters, texts = _option_letters(raw["options"], where)
    return GradedAnswer(
        id=str(raw.get("id", number)),
        answer=raw[answer_key],
        options=letters,
        graded=_graded(raw[graded_key], where),
        kind=str(raw.get(kind_key) or "unclassified"),
        option_texts=texts,
    )


def load_corpus(path: Path) -> list[GradedAnswer]:
    """The graded answers of a JSONL file; a bad line is one error naming the file and the line."""
    try:
        lines = list(iter_jsonl(path))
    except OSError as error:
        raise AnswerCorpusError(f"{path}: not readable ({error.strerror or error})") from error
    rows = []
    for number, raw in lines:
        where = f"{path}, line {number}"
        if not isinstance(raw, dict):
            raise AnswerCorpusError(f"{where}: expected an object, got {type(raw).__name__}")
        rows.append(_row(raw, where, number))
    if not rows:
        raise AnswerCorpusError(f"{path}: no graded answers in the file")
    return rows


def read_answer(row: GradedAnswer) -> Extraction:
    """The reading of a corpus answer, exactly as the evaluation reads a generation: the model's output split
    as `Engine.read_output` splits it into `Generation.reasoning` and `Generation.answer`, then both given to
    the extraction (medsft.evaluate.think_records)."""
    reasoning, answer, _ = split_reasoning(row.answer)
    return extract_choice(answer, row.option_texts or row.options, reasoning=reasoning)


def measure(rows: list[GradedAnswer]) -> Agreement:
    totals: Counter = Counter()
    agreeing: Counter = Counter()
    disagreements = []
    for row in rows:
        read = read_answer(row)
        totals[row.kind] += 1
        if (read.letters or "") == row.graded:
            agreeing[row.kind] += 1
        else:
            disagreements.append(Disagreement(row, read))
    by_class = {kind: (agreeing[kind], totals[kind]) for kind in sorted(totals)}
    return Agreement(len(rows), by_class, disagreements)
