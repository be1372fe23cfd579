"""The conversion rules: a raw {question, think, answer} record -> chat `messages`, or a rejection with a
stable reason code (documented in data/README.md), applied to every row of a source in order: fields, tags,
reserved tokens, duplicates, length. Also the seeded train/val split. The single definition of these rules,
used by `medsft data` and by training.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medsft.chat_format import (
    CHAT_TOKENS,
    DEFAULT_SYSTEM_PROMPT,
    THINK_TAGS,
    Conversation,
    build_messages,
    format_tokens,
    looks_like_markup,
)
from medsft.paths import bundled_tokenizer_dir
from medsft.readers import INVALID_JSON, INVALID_UTF8, DataError, RowRejected, SourceRow

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Stable reject reason codes (documented in data/README.md), in the order the checks run; the first two are
# the readers' (medsft.readers).
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
NON_STRING_FIELD = "non_string_field"
INVALID_TEXT = "invalid_text"
EMPTY_FIELD = "empty_field"
THINK_TAG_IN_TEXT = "think_tag_in_text"
CHAT_TOKEN_IN_TEXT = "chat_token_in_text"
DUPLICATE = "duplicate"
OVERLONG = "overlong"
REASONS = (
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    NON_STRING_FIELD,
    INVALID_TEXT,
    EMPTY_FIELD,
    THINK_TAG_IN_TEXT,
    CHAT_TOKEN_IN_TEXT,
    DUPLICATE,
    OVERLONG,
)


@dataclass(frozen=True)
class DataOptions:
    question_field: str = "question"
    think_field: str | None = "think"  # None: answer-only rows, trained in the non-thinking mode
    answer_field: str = "answer"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_length: int | None = 2048  # None (or 0, as training passes it) turns the length check off
    val_ratio: float = 0.1
    seed: int = 42

    def __post_init__(self) -> None:
        if self.max_length is not None and (isinstance(self.max_length, bool) or self.max_length < 0):
            raise DataError(
                f"max_length must be a number of tokens or None (no limit), not {self.max_length!r}."
            )

    @property
    def length_limit(self) -> int | None:
        return self.max_length or None


def normalise_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


@functools.cache
def bundled_special_tokens() -> tuple[str, ...]:
    """The added tokens of the Qwen3 tokenizer shipped with medsft, read from its configuration file."""
    config = json.loads((bundled_tokenizer_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = config["added_tokens_decoder"].values()
    return tuple(
        entry["content"] for entry in added if entry["special"] or looks_like_markup(entry["content"])
    )


def reserved_tokens(tokenizer: PreTrainedTokenizerBase | None = None) -> tuple[str, ...]:
    """Texts the tokenizer turns into one format token (chat, vision, tool, FIM … tokens), so raw text must
    not hold them: the tokenizer's special tokens and tag-like added tokens (else the shipped Qwen3
    tokenizer's). The reasoning tags are left to their own rule (THINK_TAG_IN_TEXT)."""
    if tokenizer is not None:
        return format_tokens(tokenizer)
    return tuple(sorted((set(bundled_special_tokens()) | set(CHAT_TOKENS)) - set(THINK_TAGS) - {""}))


def convert_row(
    record: Any, options: DataOptions = DataOptions(), reserved: Sequence[str] | None = None
) -> Conversation:
    """A raw record -> [system, user, assistant] messages, or RowRejected with a reason code.

    `reserved`: texts no field may hold (default: every special token of the shipped Qwen3 tokenizer)."""
    if not isinstance(record, dict):
        raise RowRejected(NOT_AN_OBJECT, f"expected a JSON object, got {type(record).__name__}")
    fields = {
        "question": options.question_field,
        "think": options.think_field,
        "answer": options.answer_field,
    }
    if options.think_field is None:  # an answer-only row: its reasoning stays empty (the non-thinking mode)
        del fields["think"]
    texts = {"think": ""}
    for role, field in fields.items():
        value = record.get(field)
        if value is None:
            raise RowRejected(MISSING_FIELD, f"field {field!r} is missing or null")
        if not isinstance(value, str):
            raise RowRejected(NON_STRING_FIELD, f"field {field!r} is {type(value).__name__}, not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise RowRejected(
                INVALID_TEXT,
                f"field {field!r} holds a lone surrogate (U+{ord(value[error.start]):04X} at character "
                f"{error.start}): "
                "not text any tokenizer can encode",
            ) from None
        texts[role] = normalise_text(value)
        if not texts[role]:
            raise RowRejected(EMPTY_FIELD, f"field {field!r} is empty or whitespace")
    reserved = bundled_special_tokens() if reserved is None else reserved
    reserved = [token for token in (*CHAT_TOKENS, *reserved) if token not in THINK_TAGS]
    for role, field in fields.items():
        if role != "question" and any(tag in texts[role] for tag in THINK_TAGS):
            tags = " or ".join(THINK_TAGS)
            raise RowRejected(THINK_TAG_IN_TEXT, f"field {field!r} already contains the reasoning tag {tags}")
        found = next((token for token in reserved if token in texts[role]), None)
        if found:
            raise RowRejected(CHAT_TOKEN_IN_TEXT, f"field {field!r} contains the special token {found}")
    return build_messages(texts["question"], texts["think"], texts["answer"], options.system_prompt)


def conversation_token_length(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> int:
    """Tokens of the whole rendered conversation (template included), exactly as training tokenizes it."""
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


def find_overlong(
    tokenizer: PreTrainedTokenizerBase, conversations: Iterable[list[dict[str, str]]], max_length: int
) -> list[tuple[int, int]]:
    """(index, token length) of each conversation longer than max_length: the rule training applies too."""
    lengths = (conversation_token_length(tokenizer, messages) for messages in conversations)
    return [(index, length) for index, length in enumerate(lengths) if length > max_length]


def split_rows(count: int, val_ratio: float, seed: int) -> set[int]:
    """Indices of the validation rows: a seeded shuffle; at least one row on each side when count >= 2."""
    val_count = round(count * val_ratio)
    if count >= 2:
        val_count = min(max(val_count, 1 if val_ratio > 0 else 0), count - 1)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[:val_count])


@dataclass
class Converted:
    """Every row read, as an accepted (row, messages, token length or None) or a reject record."""

    rows_read: int = 0
    accepted: list[tuple[SourceRow, list[dict[str, str]], int | None]] = dataclasses.field(
        default_factory=list
    )
    rejects: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def refuse_chat_rows(row: SourceRow, options: DataOptions) -> None:
    value = row.value
    chat_row = isinstance(value, dict) and isinstance(value.get("messages"), list)
    if chat_row and options.question_field not in value:
        raise DataError(
            f"{row.file}, line {row.line}: already a chat row (a `messages` list, as `medsft data` writes "
            "them). Train on its folder directly (--dataset), or pass raw rows with question/think/answer "
            "fields."
        )


def convert_rows(
    rows: Iterable[SourceRow], options: DataOptions, tokenizer: PreTrainedTokenizerBase | None
) -> Converted:
    """Apply every rule in order (parse, fields, tags, duplicates, length); each row is kept or rejected."""
    result, seen = Converted(), {}
    reserved = reserved_tokens(tokenizer)
    limit = options.length_limit
    for row in rows:
        refuse_chat_rows(row, options)
        result.rows_read += 1
        try:
            if row.error:
                raise row.error
            messages = convert_row(row.value, options, reserved)
            key = json.dumps(messages, ensure_ascii=False)
            if key in seen:
                raise RowRejected(DUPLICATE, f"same question/think/answer as {seen[key]}")
            seen[key] = f"{row.file}:{row.line}"
            length = conversation_token_length(tokenizer, messages) if tokenizer is not None else None
            if length is not None and limit and length > limit:
                raise RowRejected(OVERLONG, f"{length} tokens > max_length {limit}", length)
            result.accepted.append((row, messages, length))
        except RowRejected as rejected:
            where = {"file": row.file, "line": row.line}
            why = {"reason": rejected.reason, "detail": rejected.detail, "tokens": rejected.tokens}
            result.rejects.append({**where, **why, "raw": row.raw})
    if result.rows_read != len(result.accepted) + len(result.rejects):  # the no-loss invariant, checked
        raise AssertionError(
            f"{result.rows_read} rows read != {len(result.accepted)} + {len(result.rejects)}"
        )
    return result
