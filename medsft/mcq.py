"""Medical multiple-choice benchmark: loading (XMedBench JSON, CMMLU/C-Eval CSV, JSONL), prompts, answer
extraction, and two scoring modes: reasoning then letter extraction, or next-token likelihood."""

from __future__ import annotations

import csv
import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medsft.answer_choice import Extraction, extract_choice  # noqa: F401  (re-exported)
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, Conversation, prompt_messages
from medsft.errors import MedsftError
from medsft.jsonl import read_jsonl

LETTERS = "ABCDEFGHIJ"


class BenchmarkError(MedsftError):
    """A benchmark that cannot be used: a missing file, or a tokenizer that cannot score it."""


class BenchmarkFormatError(BenchmarkError):
    """A benchmark file or row that cannot be read as a multiple-choice question."""


@dataclass(frozen=True)
class Question:
    question: str
    options: dict[str, str]  # letter -> text, in letter order
    answer: str  # the correct letters, sorted: "C" or "ACE"
    source: str
    index: int = 0  # position in the file

    @property
    def multi(self) -> bool:
        return len(self.answer) > 1


# --- loading ------------------------------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^\s*[(（]?\s*([A-J])\s*[)）.．、:：]\s*(.*)$")


def parse_options(options: str | dict | list) -> dict[str, str]:
    """Options as `"(A) …\\n(B) …"` text, a {letter: text} mapping or a list (lettered A, B, … in order)."""
    if isinstance(options, dict):
        parsed = {str(key).strip().upper(): str(value).strip() for key, value in options.items()}
    elif isinstance(options, list):
        parsed = {LETTERS[i]: str(value).strip() for i, value in enumerate(options)}
    else:
        parsed = {}
        last = None
        for line in str(options).splitlines():
            match = _OPTION_LINE.match(line)
            if match:
                last = match.group(1)
                parsed[last] = match.group(2).strip()
            elif last and line.strip():  # an option text that runs over several lines
                parsed[last] += "\n" + line.strip()
    parsed = {letter: text for letter, text in sorted(parsed.items())}
    if len(parsed) < 2 or list(parsed) != list(LETTERS[: len(parsed)]):
        raise BenchmarkFormatError(
            f"options must be lettered A, B, … in order, got {list(parsed)}: {options!r}"
        )
    return parsed


def parse_answer(answer: str, options: dict[str, str]) -> str:
    """`"(C)"`, `"C"`, `"ACE"`, `"A,C"` → sorted letters, all of them valid options."""
    letters = "".join(sorted(set(re.findall(r"[A-J]", unicodedata.normalize("NFKC", str(answer)).upper()))))
    if not letters or any(letter not in options for letter in letters):
        raise BenchmarkFormatError(f"answer {answer!r} is not among the options {list(options)}")
    return letters


def _question(raw: dict, columns: dict[str, str], index: int, default_source: str) -> Question:
    def column(name: str) -> str | None:
        wanted = columns.get(name, name)
        for key in raw:
            if str(key).strip().lower() == wanted.lower():
                return key
        return None

    question_key, answer_key = column("question"), column("answer")
    if question_key is None or answer_key is None:
        raise BenchmarkFormatError(
            f"row {index}: needs columns {columns.get('question', 'question')!r} and "
            f"{columns.get('answer', 'answer')!r}, has {list(raw)}"
        )
    options_key = column("options")
    if options_key is not None:
        options = parse_options(raw[options_key])
    else:  # one column per letter, as the CMMLU / C-Eval CSV files
        letter_keys = {}
        for letter in LETTERS:
            key = next((k for k in raw if str(k).strip().upper() == letter), None)
            if key is None or raw[key] is None or str(raw[key]).strip() == "":
                break
            letter_keys[letter] = key
        options = parse_options({letter: raw[key] for letter, key in letter_keys.items()})
    source_key = column("source")
    source = str(raw[source_key]).strip() if source_key is not None and raw[source_key] else default_source
    return Question(
        question=str(raw[question_key]).strip(),
        options=options,
        answer=parse_answer(raw[answer_key], options),
        source=source,
        index=index,
    )


def load_questions(path: str | Path, columns: dict[str, str] | None = None) -> list[Question]:
    """Read a benchmark file by its extension: `.json` (a list of rows, XMedBench layout), `.jsonl` or `.csv`.

    `columns` renames fields, e.g. {"question": "stem", "options": "choices", "answer": "label"}.
    Without an options column, the letter columns A, B, C, … are the options. Rows without a source get the
    file's name. A malformed row raises BenchmarkFormatError naming the row.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Benchmark file not found: {path}.")
    columns = columns or {}
    rows = _read_rows(path)
    questions = []
    for index, raw in enumerate(rows):
        if not isinstance(raw, dict):
            raise BenchmarkFormatError(f"{path}, row {index}: expected an object, got {type(raw).__name__}")
        try:
            questions.append(_question(raw, columns, index, default_source=path.stem))
        except BenchmarkFormatError as error:
            raise BenchmarkFormatError(f"{path}, row {index}: {error}") from error
    return questions


def _read_rows(path: Path) -> list:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return read_jsonl(path)
        if suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise BenchmarkFormatError(f"{path}: expected a JSON list of questions")
            return rows
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as handle:
                return list(csv.DictReader(handle))
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise BenchmarkFormatError(f"{path}: not readable as {suffix[1:].upper()} ({error})") from error
    raise BenchmarkFormatError(f"{path}: unknown benchmark format (use .json, .jsonl or .csv)")


def select_questions(
    questions: Sequence[Question],
    subsets: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Question]:
    """Keep the named sources; with `limit`, a seeded random sample stratified by source (each source gets a
    share proportional to its size, largest remainders first, at least one question while the limit allows).
    The result keeps file order."""
    if subsets:
        known = {q.source for q in questions}
        missing = [name for name in subsets if name not in known]
        if missing:
            raise BenchmarkFormatError(f"unknown subset(s) {missing}; the file has {sorted(known)}")
        questions = [q for q in questions if q.source in set(subsets)]
    questions = list(questions)
    if limit is None or limit >= len(questions):
        return questions
    by_source: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_source[q.source].append(q)
    sources = sorted(by_source)
    quotas = {source: limit * len(by_source[source]) / len(questions) for source in sources}
    counts = {source: int(quotas[source]) for source in sources}
    if limit >= len(sources):
        for source in sources:
            counts[source] = max(counts[source], 1)
    by_remainder = sorted(sources, key=lambda s: (-(quotas[s] - int(quotas[s])), s))
    while sum(counts.values()) < limit:
        for source in by_remainder:
            if sum(counts.values()) < limit and counts[source] < len(by_source[source]):
                counts[source] += 1
    while sum(counts.values()) > limit:  # the "at least one" rule overshot: trim the largest
        largest = max(sources, key=lambda s: (counts[s], s))
        counts[largest] -= 1
    rng = random.Random(seed)
    chosen = {id(q) for source in sources for q in rng.sample(by_source[source], counts[source])}
    return [q for q in questions if id(q) in chosen]


# --- prompts ------------------------------------------------------------------------------------------------

INSTRUCTION = (
    "以下是中国医学考试中的选择题，请选出正确答案（通常只有一个正确选项；如有多个正确选项，请全部选出）。"
)
THINKING_REQUEST = "请先思考，然后在回答的最后一行按“答案：X”的格式给出所选选项的字母（多选如“答案：AC”）。"
ANSWER_PREFIX = "答案："


def question_text(question: Question) -> str:
    options = "\n".join(f"({letter}) {text}" for letter, text in question.options.items())
    return f"{INSTRUCTION}\n\n{question.question}\n{options}"


def thinking_conversation(question: Question, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Conversation:
    return prompt_messages(f"{question_text(question)}\n\n{THINKING_REQUEST}", system_prompt)


def likelihood_prompt(tokenizer, question: Question, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The non-thinking prompt with the assistant turn begun by "答案：": Qwen3's template renders the empty
    think block before it, exactly as with enable_thinking=False."""
    messages = [
        *prompt_messages(question_text(question), system_prompt),
        {"role": "assistant", "content": ANSWER_PREFIX},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)


# --- likelihood scoring -------------------------------------------------------------------------------------


def letter_token_ids(tokenizer, letters: str = LETTERS) -> dict[str, int]:
    """The single token of each option letter as it follows "答案：" (no leading space)."""
    ids = {}
    for letter in letters:
        encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise BenchmarkError(
                f"The tokenizer splits option letter {letter!r} into {len(encoded)} tokens: likelihood "
                "scoring needs one token per letter. Use --mcq-mode think with this model."
            )
        ids[letter] = encoded[0]
    return ids


@torch.inference_mode()
def next_token_logits(model, tokenizer, prompts: Sequence[str], batch_size: int = 8) -> list[torch.Tensor]:
    """Logits of the token that follows each prompt (right padding, read at each prompt's last position)."""
    device = next(model.parameters()).device
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: list[torch.Tensor | None] = [None] * len(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    head = model.get_output_embeddings()
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in indices)
        input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            attention[row, : len(encoded[i])] = 1
        hidden = model.base_model(input_ids=input_ids.to(device), attention_mask=attention.to(device))[0]
        last = torch.tensor([len(encoded[i]) - 1 for i in indices], device=device)
        logits = head(hidden[torch.arange(len(indices), device=device), last]).float().cpu()
        for row, i in enumerate(indices):
            results[i] = logits[row]
    return results  # type: ignore[return-value]


@dataclass
class LikelihoodResult:
    index: int
    source: str
    answer: str
    predicted: str | None  # None for multi-answer questions (not scored in this mode)
    letter_logprobs: dict[str, float] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.predicted is not None


def score_by_likelihood(
    model,
    tokenizer,
    questions: Sequence[Question],
    batch_size: int = 8,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[LikelihoodResult]:
    """Pick the option letter with the highest next-token log-probability after "答案：" (no reasoning),
    as the CMMLU / C-Eval harnesses do. Multi-answer questions cannot be answered by one token: they are
    returned unscored (predicted None) and reported as excluded."""
    letter_ids = letter_token_ids(tokenizer)
    single = [q for q in questions if not q.multi]
    logits = next_token_logits(
        model, tokenizer, [likelihood_prompt(tokenizer, q, system_prompt) for q in single], batch_size
    )
    by_index = dict(zip((q.index for q in single), logits, strict=True))
    results = []
    for q in questions:
        if q.multi:
            results.append(LikelihoodResult(q.index, q.source, q.answer, None))
            continue
        logprobs = torch.log_softmax(by_index[q.index], dim=-1)
        scores = {letter: float(logprobs[letter_ids[letter]]) for letter in q.options}
        results.append(LikelihoodResult(q.index, q.source, q.answer, max(scores, key=scores.get), scores))
    return results


# --- accuracy -----------------------------------------------------------------------------------------------


def accuracy_table(records: Sequence[dict]) -> dict[str, dict]:
    """Per source and overall: questions, scored, correct, unparseable, accuracy (correct / scored).

    Each record has `source`, `correct` (bool), and optionally `scored` (False: excluded) and `parsed`.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["source"]].append(record)
    table = {}
    for name, group in [*sorted(groups.items()), ("overall", list(records))]:
        scored = [r for r in group if r.get("scored", True)]
        correct = sum(bool(r["correct"]) for r in scored)
        table[name] = {
            "questions": len(group),
            "scored": len(scored),
            "excluded": len(group) - len(scored),
            "correct": correct,
            "unparseable": sum(not r.get("parsed", True) for r in scored),
            "accuracy": correct / len(scored) if scored else float("nan"),
        }
    return table
