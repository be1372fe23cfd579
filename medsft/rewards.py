"""Verifiable rewards of the GRPO stage on multiple-choice questions: plain functions TRL's GRPOTrainer calls
as `reward(completions, **columns) -> list[float]`, one value per completion.

A completion is read exactly as `medsft eval` reads a generation: the reasoning is split off first
(medsft.chat_format.split_reasoning) and only the answer part goes to the grader eval uses
(medsft.answer_choice.extract_choice), so that what training rewards and what evaluation scores agree. The
completion is the text as generated: in Qwen3's thinking mode it opens with `<think>` (the chat template's
generation prompt stops at `<|im_start|>assistant\\n`), and a completion cut off by max_completion_length
ends inside its think block, with no answer at all.

- correctness: 1 when the letters read equal the gold letters (the exact set for a multi-answer question),
  else 0. Letters written only inside the reasoning are never read.
- format: 1 for one well-formed think block with reasoning in it, then an answer whose last line, and only
  that line, is the asked-for `答案：X` (medsft.mcq's prompt), else 0.
- length_guard: DAPO's soft over-long penalty, 0 up to `max_tokens - buffer` completion tokens, then falling
  linearly to -1 at `max_tokens` (used through functools.partial with the run's settings).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from medsft.answer_choice import OPTION_LETTERS, answer_line, extract_choice
from medsft.chat_format import assistant_content, split_reasoning
from medsft.errors import MedsftError


class RewardError(MedsftError):
    """A reward that cannot be set up as asked: an unknown name or an impossible length budget."""


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The generated text of a completion: TRL passes a string for plain prompts and a one-turn list of
    assistant messages for conversational ones (with the reasoning apart when a response parser split it)."""
    if isinstance(completion, str):
        return completion
    message = completion[-1]
    reasoning = message.get("reasoning_content")
    content = message.get("content") or ""
    if reasoning:
        return assistant_content(reasoning, content)
    return content


def option_map(options: Sequence[str]) -> dict[str, str]:
    """{letter: text} of a row's option texts, given in letter order."""
    return dict(zip(OPTION_LETTERS, options, strict=False))


def chosen_letters(completion: str | list[dict[str, Any]], options: Sequence[str]) -> str | None:
    """The letters eval reads from the completion (its answer part, the reasoning passed beside it as eval
    passes it); None when nothing can be read."""
    reasoning, answer, _ = split_reasoning(completion_text(completion))
    return extract_choice(answer, option_map(options), reasoning=reasoning).letters


def correctness(completions: list, gold: list[str], options: list[Sequence[str]], **_: Any) -> list[float]:
    """1.0 when the answer's letters are exactly the gold letters, else 0.0."""
    return [
        float(chosen_letters(completion, row_options) == row_gold)
        for completion, row_gold, row_options in zip(completions, gold, options, strict=True)
    ]


def well_formatted(text: str) -> bool:
    reasoning, answer, well_formed = split_reasoning(text)
    if not (well_formed and reasoning):
        return False
    lines = [line for line in answer.splitlines() if line.strip()]
    answer_lines = [index for index, line in enumerate(lines) if answer_line(line) is not None]
    return answer_lines == [len(lines) - 1]


def format(completions: list, **_: Any) -> list[float]:  # noqa: A001  (the reward's name in the logs)
    """1.0 for `<think>` reasoning `</think>` then an answer ending in its one `答案：X` line, else 0.0."""
    return [float(well_formatted(completion_text(completion))) for completion in completions]


def length_guard(
    completions: list, completion_ids: list[list[int]], max_tokens: int, buffer: int, **_: Any
) -> list[float]:
    """0.0 up to `max_tokens - buffer` tokens, then linearly down to -1.0 at `max_tokens` (and beyond)."""
    start = max_tokens - buffer
    return [-min(1.0, max(0, len(ids) - start) / buffer) for ids in completion_ids]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "correctness": correctness,
    "format": format,
    "length_guard": length_guard,
}


def reward_functions(names: Sequence[str], max_completion_length: int, length_buffer: int) -> list[Callable]:
    """The reward functions a recipe names, in its order (the order of its reward_weights)."""
    functions = []
    for name in names:
        if name not in REWARDS:
            raise RewardError(f"Unknown reward {name!r}: choose among {', '.join(REWARDS)}.")
        if name == "length_guard":
            if not 0 < length_buffer <= max_completion_length:
                raise RewardError(
                    f"length_guard_buffer must be between 1 and max_completion_length "
                    f"({max_completion_length}), not {length_buffer}."
                )
            functions.append(
                functools.partial(length_guard, max_tokens=max_completion_length, buffer=length_buffer)
            )
        else:
            functions.append(REWARDS[name])
    return functions
