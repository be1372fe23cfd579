"""Multiple-choice questions -> prompt + gold rows for the GRPO stage (`medsft data --kind mcq`).

The questions are read by eval's own loader (medsft.mcq: XMedBench JSON, CMMLU/C-Eval CSV, JSONL) and asked
with eval's own prompt (`thinking` or `direct` mode), so that a trained prompt is exactly an evaluated one in
form. Every row read is kept or rejected with a reason: `invalid_question` (eval's loader refused it: a
missing or bad gold answer, options that are not lettered A, B, … or a gold letter not among them, a row
that is not an object), `chat_token_in_text`, `duplicate` (the same stem and options as a row kept before)
and `benchmark_overlap` (the question overlaps an evaluated benchmark question, medsft.decontamination).

A row: {"prompt": [system, user], "gold": "C", "options": [text of A, text of B, …], "source", "mode"}; TRL's
GRPOTrainer passes the extra columns to the reward functions (medsft.rewards).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medsft.chat_format import DEFAULT_SYSTEM_PROMPT
from medsft.conversion import CHAT_TOKEN_IN_TEXT, DUPLICATE, reserved_tokens
from medsft.decontamination import BenchmarkIndex, normalise
from medsft.mixture import BENCHMARK_OVERLAP
from medsft.sources import display_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from medsft.mcq import Question

INVALID_QUESTION = "invalid_question"
MCQ_REASONS = (INVALID_QUESTION, CHAT_TOKEN_IN_TEXT, DUPLICATE, BENCHMARK_OVERLAP)
MCQ_MODES = ("thinking", "direct")
DEFAULT_DECONTAMINATION = ("xmedbench",)  # the benchmarks `medsft eval` reads by default

Mode = Literal["thinking", "direct"]


@dataclass
class McqRows:
    """Every question read, as a kept row or a reject, and the files it came from."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.kept) + len(self.rejects)


def prompt_row(question: Question, mode: Mode, system_prompt: str) -> dict[str, Any]:
    from medsft.mcq import direct_conversation, thinking_conversation

    conversation = thinking_conversation if mode == "thinking" else direct_conversation
    return {
        "prompt": conversation(question, system_prompt),
        "gold": question.answer,
        "options": list(question.options.values()),
        "source": question.source,
        "mode": mode,
    }


def read_mcq_rows(
    specs: Sequence[str | Path],
    index: BenchmarkIndex | None,
    mode: Mode = "thinking",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    columns: dict[str, str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> McqRows:
    """The questions of the MCQ files (files, folders or glob patterns, as `medsft eval --mcq-file`), each
    kept as a prompt + gold row or rejected with its reason. No text may hold one of the tokenizer's control
    tokens (the shipped Qwen3 tokenizer's without one)."""
    from medsft.mcq import SkippedRow, benchmark_files, load_questions, question_text

    result = McqRows()
    reserved = reserved_tokens(tokenizer)
    seen: dict[str, str] = {}  # normalised stem and options -> where the kept row came from
    for path in benchmark_files(list(specs)):
        name = display_name(path)
        result.inputs.append(
            {
                "file": name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "bytes": path.stat().st_size,
            }
        )
        skipped: list[SkippedRow] = []
        questions = load_questions(path, columns, skipped=skipped)
        for row in skipped:
            result.rejects.append(
                {"file": name, "row": row.row, "reason": INVALID_QUESTION, "detail": row.reason}
            )
        for question in questions:
            where = {"file": name, "row": question.index, "question": question.question}
            text = question_text(question)
            found = next((token for token in reserved if token in text), None)
            if found:
                detail = f"the question or an option contains the special token {found}"
                result.rejects.append({**where, "reason": CHAT_TOKEN_IN_TEXT, "detail": detail})
                continue
            overlap = index.match(text, list(question.options.values())) if index is not None else None
            if overlap is not None:
                result.rejects.append(
                    {
                        **where,
                        "reason": BENCHMARK_OVERLAP,
                        "detail": overlap.describe(),
                        "benchmark": overlap.question.benchmark,
                    }
                )
                continue
            key = normalise(text)
            if key in seen:
                detail = f"same question and options as {seen[key]}"
                result.rejects.append({**where, "reason": DUPLICATE, "detail": detail})
                continue
            seen[key] = f"{name}:{question.index}"
            result.kept.append(prompt_row(question, mode, system_prompt))
    result.rejects.sort(key=lambda entry: (entry["file"], entry["row"]))
    return result
