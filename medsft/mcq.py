"""Medical multiple-choice benchmark: loading (XMedBench JSON, CMMLU/C-Eval CSV folders, JSONL), prompts, two
scoring modes (reasoning then letter extraction, or next-token likelihood), and accuracy tables with their
uncertainty (intervals, chance levels, answer distributions, paired tests; see medsft.significance)."""

from __future__ import annotations

import csv
import glob
import json
import logging
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from medsft.answer_choice import Extraction, extract_choice  # noqa: F401  (re-exported)
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, Conversation, prompt_messages
from medsft.errors import MedsftError
from medsft.readers import INVALID_UTF8, DataError, jsonl_rows
from medsft.significance import (
    accuracy_interval,
    answer_counts,
    chance_level,
    dominant_answer,
    mcnemar,
    overall_accuracy,
)

LETTERS = "ABCDEFGHIJ"

log = logging.getLogger(__name__)


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


# option letters, optionally bracketed and separated: C, (C), ACE, (ACE), A,C, A、C, A C, [A, C]
_ANSWER_LETTERS = re.compile(r"[(\[]?\s*([A-J](?:\s*[,、/;]?\s*[A-J])*)\s*[)\]]?\.?")


def parse_answer(answer: str | list, options: dict[str, str]) -> str:
    """`"(C)"`, `"C"`, `"ACE"`, `"A,C"`, `["A", "C"]` → sorted letters, each one among the options.

    Anything else is a BenchmarkFormatError: a missing answer, a number, or words around the letters
    (`"Answer: B"` is not read as A, B and E)."""
    if isinstance(answer, list) and answer and all(isinstance(item, str) for item in answer):
        text = ",".join(answer)
    elif isinstance(answer, str):
        text = answer
    elif answer is None:
        raise BenchmarkFormatError("answer is missing (null)")
    else:
        raise BenchmarkFormatError(f"answer {answer!r} is a {type(answer).__name__}, not option letters")
    if not text.strip():
        raise BenchmarkFormatError("answer is empty")
    match = _ANSWER_LETTERS.fullmatch(unicodedata.normalize("NFKC", text).strip().upper())
    if not match:
        raise BenchmarkFormatError(f"answer {answer!r} is not option letters such as C, (C), ACE or A,C")
    letters = "".join(sorted(set(re.findall(r"[A-J]", match.group(1)))))
    outside = [letter for letter in letters if letter not in options]
    if outside:
        raise BenchmarkFormatError(
            f"answer {answer!r} names {', '.join(outside)}, not among the options {list(options)}"
        )
    return letters


def _find_column(raw: dict, name: str) -> str | None:
    for key in raw:
        if key is not None and str(key).strip().lower() == name.lower():
            return key
    return None


def _question(raw: dict, columns: dict[str, str], index: int, default_source: str) -> Question:
    question_key = _find_column(raw, columns.get("question", "question"))
    answer_key = _find_column(raw, columns.get("answer", "answer"))
    if question_key is None or answer_key is None:
        raise BenchmarkFormatError(
            f"needs columns {columns.get('question', 'question')!r} and "
            f"{columns.get('answer', 'answer')!r}, has {list(raw)}"
        )
    options_key = _find_column(raw, columns.get("options", "options"))
    if options_key is not None:
        options = parse_options(raw[options_key])
    else:  # one column per letter, as the CMMLU / C-Eval CSV files
        letter_keys = {}
        for letter in LETTERS:
            key = _find_column(raw, letter)
            if key is None or raw[key] is None or str(raw[key]).strip() == "":
                break
            letter_keys[letter] = key
        options = parse_options({letter: raw[key] for letter, key in letter_keys.items()})
    source_key = _find_column(raw, columns.get("source", "source"))
    source = str(raw[source_key]).strip() if source_key is not None and raw[source_key] else default_source
    if not isinstance(raw[question_key], str) or not raw[question_key].strip():
        raise BenchmarkFormatError(f"question is empty or not text ({raw[question_key]!r})")
    return Question(
        question=str(raw[question_key]).strip(),
        options=options,
        answer=parse_answer(raw[answer_key], options),
        source=source,
        index=index,
    )


def subject_name(path: Path) -> str:
    """The subject a benchmark file holds: its name without the extension and without C-Eval's split suffix
    (`clinical_medicine_val.csv` → `clinical_medicine`; CMMLU's `clinical_knowledge.csv` stays as it is)."""
    return _SPLIT_SUFFIX.sub("", path.stem) or path.stem


_SPLIT_SUFFIX = re.compile(r"_(?:val|dev|test)$")


def _refuse_unanswered(path: Path, rows: list, columns: dict[str, str]) -> None:
    """A file without answers (C-Eval's test split keeps them private) cannot be scored: say so once."""
    wanted = columns.get("answer", "answer")
    answers = [row[key] for row in rows if (key := _find_column(row, wanted)) is not None]
    if rows and not any(answer is not None and str(answer).strip() for answer in answers):
        found = "empty" if answers else "missing"
        header = list(rows[0])
        raise BenchmarkFormatError(
            f"{path} has no answers (the {wanted!r} column is {found}; columns: {header}), so it cannot be "
            "scored. C-Eval's test files are like this: their answers are not public. Use C-Eval's val/ "
            "(or dev/) files, or name the answer column with --mcq-columns answer=…."
        )


def load_questions(
    path: str | Path,
    columns: dict[str, str] | None = None,
    default_source: str | None = None,
    first_index: int = 0,
    skipped: list[SkippedRow] | None = None,
) -> list[Question]:
    """Read a benchmark file by its extension: `.json` (a list of rows, XMedBench layout), `.jsonl` or `.csv`.

    `columns` renames fields, e.g. {"question": "stem", "options": "choices", "answer": "label"}.
    Without an options column, the letter columns A, B, C, … are the options. Rows without a source get
    `default_source` (unset: the file's subject name, see `subject_name`). Question indexes count from
    `first_index`. A row that is not a usable question (a JSONL line that is not UTF-8 JSON, not an object,
    an answer that is not option letters …) is skipped: logged with its reason and added to `skipped`.
    A file without answers, or without one usable question, raises BenchmarkFormatError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Benchmark file not found: {path}.")
    columns = columns or {}
    rows = _read_rows(path)
    left_out: list[SkippedRow] = []
    usable = {}
    for number, raw in enumerate(rows):
        if isinstance(raw, _UnreadableRow):
            left_out.append(SkippedRow(str(path), first_index + number, raw.reason))
        elif not isinstance(raw, dict):
            reason = f"expected an object, got {type(raw).__name__}"
            left_out.append(SkippedRow(str(path), first_index + number, reason))
        else:
            usable[number] = raw
    _refuse_unanswered(path, list(usable.values()), columns)
    source = default_source or subject_name(path)
    questions = []
    for number, raw in usable.items():
        try:
            questions.append(_question(raw, columns, first_index + number, default_source=source))
        except BenchmarkFormatError as error:
            left_out.append(SkippedRow(str(path), first_index + number, str(error)))
    left_out.sort(key=lambda row: row.row)
    if not questions:
        if not left_out:
            raise BenchmarkFormatError(f"{path} has no questions.")
        first = left_out[0]
        raise BenchmarkFormatError(
            f"{path}, row {first.row - first_index}: {first.reason} (no usable question in the file: "
            f"{len(left_out)} rows skipped)."
        )
    for row in left_out[:SKIPPED_ROWS_LOGGED]:
        log.warning("%s, row %d skipped: %s", path, row.row - first_index, row.reason)
    if len(left_out) > SKIPPED_ROWS_LOGGED:
        log.warning("%s: %d more rows skipped", path, len(left_out) - SKIPPED_ROWS_LOGGED)
    if skipped is not None:
        skipped.extend(left_out)
    return questions


SKIPPED_ROWS_LOGGED = 20


@dataclass(frozen=True)
class SkippedRow:
    """A benchmark row that is not a usable question, and why."""

    file: str
    row: int  # the index the question would have had (its position in the file, plus first_index)
    reason: str


@dataclass(frozen=True)
class _UnreadableRow:
    reason: str


def _jsonl_rows(path: Path) -> list:
    """Each non-blank line's value (medsft.readers' JSON Lines reader); a line that is not UTF-8 JSON is an
    _UnreadableRow, skipped later."""
    try:
        lines = jsonl_rows(path.read_bytes(), str(path))
    except DataError as error:  # a UTF-16/UTF-32 byte-order mark on a file that is not in that encoding
        raise BenchmarkFormatError(str(error)) from error
    rows: list = []
    for line in lines:
        if line.error is None:
            rows.append(line.value)
        else:
            detail = line.error.detail  # "not UTF-8 (…)" already says what the line is not
            why = detail if line.error.reason == INVALID_UTF8 else f"not JSON ({detail})"
            rows.append(_UnreadableRow(f"line {line.line} is {why}"))
    return rows


def _read_rows(path: Path) -> list:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _jsonl_rows(path)
        if suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise BenchmarkFormatError(f"{path}: expected a JSON list of questions")
            return rows
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as handle:
                return list(csv.DictReader(handle))
    except (UnicodeDecodeError, ValueError, RecursionError, csv.Error) as error:  # ValueError: bad JSON
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise BenchmarkFormatError(f"{path}: not readable as {suffix[1:].upper()} ({reason})") from error
    raise BenchmarkFormatError(f"{path}: unknown benchmark format (use .json, .jsonl or .csv)")


@dataclass(frozen=True)
class BenchmarkFormat:
    name: str
    files: str
    columns: str
    note: str


BENCHMARK_FORMATS = (
    BenchmarkFormat(
        "XMedBench, Chinese part (Apollo project; the default)",
        "test_zh.json, dev_zh.json: one JSON list of questions",
        'question, options ("(A) …\\n(B) …"), answer ("(C)", multi-answer "(ACE)"), source',
        "sources cmb-single, cmexam, cmmlu-medical, medqa-mcmle",
    ),
    BenchmarkFormat(
        "CMMLU",
        "data/test/<subject>.csv or data/dev/<subject>.csv: one CSV per subject",
        "an unnamed index column (ignored), Question, A, B, C, D, Answer",
        "pass the folder: every file is a subject, named by its file",
    ),
    BenchmarkFormat(
        "C-Eval",
        "val/<subject>_val.csv or dev/<subject>_dev.csv: one CSV per subject",
        "id, question, A, B, C, D, answer, explanation (id and explanation ignored)",
        "the subject drops the _val/_dev suffix; test/ files have no answers and are refused",
    ),
    BenchmarkFormat(
        "Own files",
        ".jsonl (one question a line), .json (a list) or .csv",
        "question, answer, and options (text as above, a list, or {letter: text}) or one column per "
        "letter A, B, …; source optional",
        "rename with --mcq-columns question=…,options=…,answer=…,source=…",
    ),
)


def describe_formats() -> str:
    """What `medsft eval --list-benchmarks` prints."""
    lines = [
        "Benchmark formats that --mcq-file understands (several files, a folder or a glob pattern; each",
        "file is a subject unless its rows have a source column). Column names are matched ignoring case;",
        "answers may be written C, (C), ACE or A,C; up to 10 options, A to J.",
    ]
    for benchmark in BENCHMARK_FORMATS:
        lines += [
            "",
            benchmark.name,
            f"  files:   {benchmark.files}",
            f"  columns: {benchmark.columns}",
            f"  note:    {benchmark.note}",
        ]
    return "\n".join(lines)


BENCHMARK_SUFFIXES = (".csv", ".json", ".jsonl")
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


def benchmark_files(specs: Sequence[str | Path]) -> list[Path]:
    """The files that `--mcq-file` names: files, folders (their .csv, .json and .jsonl files, not recursive)
    and glob patterns (`cmmlu/test/*.csv`), in the order given, folders and patterns sorted by name."""
    files: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in BENCHMARK_SUFFIXES
            )
            if not found:
                raise BenchmarkError(f"Benchmark folder {path} has no {', '.join(BENCHMARK_SUFFIXES)} files.")
        elif path.is_file():
            found = [path]
        elif _GLOB_CHARACTERS.search(str(spec)):
            found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not found:
                raise BenchmarkError(f"Benchmark pattern {spec!r} matches no file.")
        else:
            raise BenchmarkError(f"Benchmark file not found: {path}.")
        files += [p for p in found if p not in files]
    return files


def load_benchmark(
    paths: Sequence[Path], columns: dict[str, str] | None = None, skipped: list[SkippedRow] | None = None
) -> list[Question]:
    """The questions of several files, each file one subject (unless its rows name their source); question
    indexes run through all files in order, so every question has its own (a skipped row keeps its index
    unused). Rows that are not usable questions are added to `skipped`."""
    named: dict[str, Path] = {}
    for path in paths:
        subject = subject_name(path)
        if subject in named:
            raise BenchmarkFormatError(
                f"{named[subject]} and {path} are both subject {subject!r}: pass one of them."
            )
        named[subject] = path
    questions: list[Question] = []
    next_index = 0
    for path in paths:
        left_out: list[SkippedRow] = []
        found = load_questions(path, columns, first_index=next_index, skipped=left_out)
        questions += found
        next_index += len(found) + len(left_out)
        if skipped is not None:
            skipped.extend(left_out)
    return questions


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
ANSWER_PREFIX = "答案："
# Both modes end with the request for one final answer line, the form the extractor reads first and strictly
# (medsft.answer_choice.answer_line), as CMB and CMExam evaluations ask.
ANSWER_LINE_REQUEST = (
    f"在回答的最后一行按“{ANSWER_PREFIX}X”的格式给出所选选项的字母（多选如“{ANSWER_PREFIX}AC”）。"
)
THINKING_REQUEST = f"请先思考，然后{ANSWER_LINE_REQUEST}"
DIRECT_REQUEST = f"请直接作答，{ANSWER_LINE_REQUEST}"


def question_text(question: Question) -> str:
    options = "\n".join(f"({letter}) {text}" for letter, text in question.options.items())
    return f"{INSTRUCTION}\n\n{question.question}\n{options}"


def thinking_conversation(question: Question, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Conversation:
    return prompt_messages(f"{question_text(question)}\n\n{THINKING_REQUEST}", system_prompt)


def direct_conversation(question: Question, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Conversation:
    """The question asking for the answer line directly: the prompt of answers generated in the non-thinking
    mode (the likelihood prompt without the answer begun)."""
    return prompt_messages(f"{question_text(question)}\n\n{DIRECT_REQUEST}", system_prompt)


def likelihood_prompt(tokenizer, question: Question, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The non-thinking prompt, asking for the answer line and with the assistant turn begun by it ("答案："):
    Qwen3's template renders the empty think block before it, exactly as with enable_thinking=False."""
    messages = [
        *direct_conversation(question, system_prompt),
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


# --- accuracy ---------------------------------------------------------------------------------------------


def _option_count(record: dict) -> int:
    return len(record["options"])


def accuracy_table(records: Sequence[dict], confidence: float = 0.95) -> dict[str, dict]:
    """Per source, and "overall" pooled over all questions: how many questions, scored, excluded, correct and
    unparseable; the accuracy (correct / scored) with its Wilson interval (`ci95`); the chance level of those
    questions and whether the interval lies above it; the predicted and gold answer distributions; and the
    answer given for more than 60 % of the questions (`dominant`), if any.

    Each record has `source`, `gold`, `predicted` (None: no letter), `correct`, `options` (letter → text),
    and optionally `scored` (False: excluded from this accuracy) and `parsed`.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["source"]].append(record)
    return {
        name: _accuracy_row(group, confidence)
        for name, group in [*sorted(groups.items()), ("overall", list(records))]
    }


def _accuracy_row(group: list[dict], confidence: float) -> dict:
    scored = [r for r in group if r.get("scored", True)]
    correct = sum(bool(r["correct"]) for r in scored)
    row: dict = {
        "questions": len(group),
        "scored": len(scored),
        "excluded": len(group) - len(scored),
        "correct": correct,
        "unparseable": sum(not r.get("parsed", True) for r in scored),
        "accuracy": correct / len(scored) if scored else float("nan"),
        "ci95": None,
        "chance": None,
        "above_chance": None,
        "predicted": answer_counts(r["predicted"] for r in scored),
        "gold": answer_counts(r["gold"] for r in scored),
        "dominant": None,
    }
    if scored:
        interval = accuracy_interval(correct, len(scored), confidence)
        chance = chance_level([r["gold"] for r in scored], [_option_count(r) for r in scored])
        dominant = dominant_answer([r["predicted"] for r in scored])
        row["ci95"] = [interval.low, interval.high]
        row["chance"] = asdict(chance)
        row["above_chance"] = interval.low > chance.level
        row["dominant"] = asdict(dominant) if dominant else None
    return row


def macro_average(records: Sequence[dict]) -> dict | None:
    """The overall accuracy as CMMLU and C-Eval results are quoted: the mean of the per-source (subject)
    accuracies, each source counting once, and the mean of their chance levels; None when nothing was
    scored."""
    scored = [r for r in records if r.get("scored", True)]
    if not scored:
        return None
    overall = overall_accuracy([bool(r["correct"]) for r in scored], [r["source"] for r in scored])
    by_source: dict[str, list[dict]] = defaultdict(list)
    for record in scored:
        by_source[record["source"]].append(record)
    chances = [
        chance_level([r["gold"] for r in group], [_option_count(r) for r in group]).level
        for group in by_source.values()
    ]
    return {
        "accuracy": overall.macro,
        "sources": len(overall.groups),
        "chance_level": sum(chances) / len(chances),
    }


def paired_comparison(base: Sequence[dict], tuned: Sequence[dict], alpha: float = 0.05) -> dict[str, dict]:
    """Per source and "overall": McNemar's test of two models on the questions both were scored on (matched
    by `index`): the discordant counts, the accuracy difference (tuned − base), the p-value, and
    `beyond_noise` when p < alpha."""
    base_by_index = {r["index"]: r for r in base if r.get("scored", True)}
    pairs = [
        (base_by_index[r["index"]], r) for r in tuned if r.get("scored", True) and r["index"] in base_by_index
    ]
    groups: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for pair in pairs:
        groups[pair[1]["source"]].append(pair)
    result = {}
    for name, group in [*sorted(groups.items()), ("overall", pairs)]:
        if not group:
            continue
        test = mcnemar([bool(b["correct"]) for b, _ in group], [bool(t["correct"]) for _, t in group])
        result[name] = {**asdict(test), "beyond_noise": test.p_value < alpha}
    return result
