"""`medsft data`: raw {question, think, answer} rows -> chat `messages` rows for SFT, losing nothing.

Every non-blank input row ends up in train.jsonl / val.jsonl or in rejects.jsonl with a stable reason code,
and report.json proves it (rows read = converted + rejected). The four files are one set: a run writes them
into a temporary folder and swaps it in whole (medsft.atomic_folder), under a lock, so a reader sees the
previous set or the new one, never a mix. The public helpers (convert_row, conversation_token_length,
find_overlong, prepare) are the single definition of the rules, reused by training.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import random
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.atomic_folder import exit_on_signal, folder_lock, remove_stale_temporaries, replace_folder
from medsft.chat_format import CHAT_TOKENS, DEFAULT_SYSTEM_PROMPT, THINK_TAGS, Conversation, build_messages
from medsft.errors import MedsftError
from medsft.jsonl import dumps_line
from medsft.paths import bundled_tokenizer_dir, processed_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "krisfu/delicate_medical_r1_data"
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
OUTPUT_FILES = ("train.jsonl", "val.jsonl", "rejects.jsonl", "report.json")
SPLIT_WORDS = {
    "train": {"train", "training"},
    "val": {"val", "valid", "validation", "dev"},
    "test": {"test", "testing"},
}
# Hub metadata that shares the data suffixes but holds no rows.
METADATA_FILES = {
    "configuration.json",
    "dataset_infos.json",
    "dataset_info.json",
    "dataset_dict.json",
    "state.json",
}
TEST_SPLIT_SKIPPED = "a test split, held out for evaluation (pass the file itself to convert it)"
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

# Stable reject reason codes (documented in data/README.md), in the order the checks run.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
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


class DataError(MedsftError):
    """The source cannot be read or converted as asked (clear message for the user)."""


class RowRejected(ValueError):
    """A row that cannot become a training example: reason code, detail, and token length if measured."""

    def __init__(self, reason: str, detail: str, tokens: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.tokens = reason, detail, tokens


@dataclass(frozen=True)
class DataOptions:
    question_field: str = "question"
    think_field: str = "think"
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


@dataclass
class SourceRow:
    """One row of input: where it came from, its raw text, and its parsed value (None when unparseable)."""

    file: str
    line: int  # 1-based line of a JSONL file; 1-based record number of a .json list or a .parquet file
    split: str | None  # "train" / "val" when the source already has both splits
    raw: str
    value: Any = None
    error: RowRejected | None = None


# ---------------------------------------------------------------- conversion rules


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


def looks_like_markup(token: str) -> bool:
    """`<tool_call>`, `<|fim_pad|>`: a format token, unlike an added plain word such as a drug name."""
    return token.startswith("<") and token.endswith(">") and len(token) > 2


def reserved_tokens(tokenizer: PreTrainedTokenizerBase | None = None) -> tuple[str, ...]:
    """Texts the tokenizer turns into one format token (chat, vision, tool, FIM … tokens), so raw text must
    not hold them: the tokenizer's special tokens and tag-like added tokens (else the shipped Qwen3
    tokenizer's). The reasoning tags are left to their own rule (THINK_TAG_IN_TEXT)."""
    if tokenizer is None:
        found = set(bundled_special_tokens())
    else:
        added = tokenizer.added_tokens_decoder.values()
        found = {token.content for token in added if token.special or looks_like_markup(token.content)}
        found |= set(tokenizer.all_special_tokens)
    return tuple(sorted((found | set(CHAT_TOKENS)) - set(THINK_TAGS) - {""}))


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
    texts = {}
    for role, field in fields.items():
        value = record.get(field)
        if value is None:
            raise RowRejected(MISSING_FIELD, f"field {field!r} is missing or null")
        if not isinstance(value, str):
            raise RowRejected(NON_STRING_FIELD, f"field {field!r} is {type(value).__name__}, not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = value[error.start : error.end].encode("utf-8", "surrogatepass").hex()
            raise RowRejected(
                INVALID_TEXT,
                f"field {field!r} holds a lone surrogate (U+{bad.upper()} at character {error.start}): "
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


# ---------------------------------------------------------------- reading files


def split_of(path: Path) -> str | None:
    """'train' / 'val' / 'test' from a path such as train.jsonl, data/val-00000.parquet, test/part.json."""
    words = set(re.split(r"[-_./]", path.with_suffix("").as_posix().lower()))
    found = [split for split, names in SPLIT_WORDS.items() if words & names]
    return found[0] if len(found) == 1 else None


def display_name(path: Path) -> str:
    """A path as text that can be written to UTF-8 (undecodable bytes of a file name shown as \\xNN)."""
    return os.fsencode(path.as_posix()).decode("utf-8", errors="backslashreplace")


def parse_json_text(text: str) -> tuple[Any, RowRejected | None]:
    """(value, None), or (None, an invalid_json rejection) for text that is not JSON or cannot be held."""
    try:
        return json.loads(text), None
    except RecursionError:
        return None, RowRejected(INVALID_JSON, "nested too deeply to read")
    except ValueError as error:  # JSONDecodeError, or an integer with more digits than Python converts
        return None, RowRejected(INVALID_JSON, str(error))


def byte_order_mark(data: bytes) -> tuple[bytes, str] | None:
    return next(((mark, codec) for mark, codec in BYTE_ORDER_MARKS if data.startswith(mark)), None)


def decoded_lines(data: bytes, file: str) -> list[tuple[int, str | None, str]]:
    """(line number, text or None when not UTF-8, raw text) of each non-blank line; CRLF, CR and LF all end
    a line. UTF-8 is decoded line by line, so one bad line costs one row; a file with a UTF-16/UTF-32
    byte-order mark is decoded whole."""
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
    result = []
    for number, line_bytes in enumerate(LINE_BREAK.split(data), start=1):
        line_bytes = line_bytes.removeprefix(b"\xef\xbb\xbf")
        if not line_bytes.strip():
            continue
        try:
            text = line_bytes.decode("utf-8")
            result.append((number, text, text))
        except UnicodeDecodeError:
            result.append((number, None, line_bytes.decode("utf-8", errors="backslashreplace")))
    return result


def describe_undecodable(data: bytes) -> str:
    """Why a file with no JSON line is not JSON Lines: the encoding or content it seems to have."""
    head = data[:4096]
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


def jsonl_rows(data: bytes, file: str, split: str | None) -> list[SourceRow]:
    """One row per non-blank line; a bad line is a rejected row. A file with no JSON line is a DataError."""
    rows = []
    for number, text, raw in decoded_lines(data, file):
        if text is None:
            error = RowRejected(INVALID_UTF8, "not valid UTF-8")
            rows.append(SourceRow(file, number, split, raw, error=error))
            continue
        value, error = parse_json_text(text)
        rows.append(SourceRow(file, number, split, raw, value=value, error=error))
    if rows and all(row.error for row in rows):
        raise DataError(
            f"{file}: no line is JSON, so it is not JSON Lines (one JSON object per line, UTF-8): "
            f"{describe_undecodable(data)}."
        )
    return rows


def text_position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}, column {index - text.rfind(chr(10), 0, index)}"


def json_array_rows(text: str, file: str, split: str | None) -> list[SourceRow]:
    """Each element of a JSON array is a row (its raw text is its slice of the file); any syntax error is a
    DataError naming its line and column, since the elements after it cannot be told apart."""
    decoder = json.JSONDecoder()

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
    return jsonl_rows(data, file, split), digest


# ---------------------------------------------------------------- finding files


@dataclass
class SourceFiles:
    root: Path
    chosen: list[tuple[Path, str | None]]  # (file, split kept from the source)
    skipped: list[dict[str, str]]  # {"file", "reason"}: everything in the folder that is not read


def scan_folder(folder: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Data files under `folder` (sorted, recursive), and what is skipped: hidden, metadata, other files."""
    files, skipped = [], []
    for current, directories, names in os.walk(folder):
        here = Path(current)
        for directory in sorted(directories):
            if directory.startswith("."):
                relative = display_name((here / directory).relative_to(folder))
                skipped.append({"file": relative, "reason": "hidden folder"})
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(names):
            path = here / name
            relative = display_name(path.relative_to(folder))
            if name.startswith("."):
                skipped.append({"file": relative, "reason": "hidden file"})
            elif path.suffix not in DATA_SUFFIXES:
                skipped.append({"file": relative, "reason": f"not a data file ({', '.join(DATA_SUFFIXES)})"})
            elif name in METADATA_FILES:
                skipped.append({"file": relative, "reason": "hub metadata, no rows"})
            else:
                files.append(path)
    return sorted(files), skipped


def choose_files(root: Path, files: list[Path]) -> tuple[list[tuple[Path, str | None]], list[dict[str, str]]]:
    """(file, kept split) pairs to read, and the files left out with the reason.

    Both train and val files present: keep the source's split and leave out the rest. Otherwise pool
    everything except test files (held out for evaluation) and split it here."""
    splits = {file: split_of(file.relative_to(root)) for file in files}
    keep = {"train", "val"} <= set(splits.values())
    wanted = {"train", "val"} if keep else {"train", "val", None}
    chosen = [(file, splits[file] if keep else None) for file in files if splits[file] in wanted]
    left_out = [
        {
            "file": display_name(file.relative_to(root)),
            "reason": TEST_SPLIT_SKIPPED
            if splits[file] == "test"
            else "outside the source's own train/val split",
        }
        for file in files
        if splits[file] not in wanted
    ]
    return chosen, left_out


def download_dataset(dataset_id: str) -> Path:
    """Raw files of a ModelScope dataset (cached after the first download)."""
    try:
        from modelscope import dataset_snapshot_download

        return Path(dataset_snapshot_download(dataset_id))
    except Exception as error:  # network, auth or "not found": one clear message for all
        raise DataError(
            f"{dataset_id!r} is not a local file or folder, and its download as a ModelScope dataset failed "
            f"({type(error).__name__}: {error}). "
            f"Without network access, download it elsewhere (`modelscope download --dataset {dataset_id} "
            "--local_dir DIR`) and pass the local file or folder: make data SRC=DIR (or --src DIR)."
        ) from error


def local_source(source: str) -> Path | None:
    """The local file or folder `source` names; None for a ModelScope id; DataError for a missing path."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    looks_local = source.startswith((".", "/", "~")) or path.suffix in DATA_SUFFIXES
    if looks_local or not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise DataError(f"Source {source!r} does not exist (expected a data file or folder).")
    return None


def resolve_source(source: str, path: Path | None = None) -> SourceFiles:
    """The files to read from a local file or folder, or from a ModelScope dataset id (downloaded)."""
    path = path or local_source(source) or download_dataset(source)
    if path.is_file():
        if path.suffix not in DATA_SUFFIXES:
            raise DataError(f"Source {source!r}: unsupported file type (use {', '.join(DATA_SUFFIXES)}).")
        return SourceFiles(path.parent, [(path, None)], [])
    files, skipped = scan_folder(path)
    if not files:
        raise DataError(f"Source {source!r} holds no {'/'.join(DATA_SUFFIXES)} files.")
    chosen, left_out = choose_files(path, files)
    if not chosen:
        names = ", ".join(entry["file"] for entry in left_out)
        raise DataError(f"Source {source!r} holds only test files ({names}): pass one of them.")
    return SourceFiles(path, chosen, sorted([*skipped, *left_out], key=lambda entry: entry["file"]))


def refuse_overlap(source: Path, out_dir: Path) -> None:
    """A source inside the output folder would be replaced by the run reading it; a source folder holding the
    output folder would read earlier outputs back as input."""
    resolved = source.resolve()
    if resolved == out_dir or out_dir in resolved.parents:
        raise DataError(
            f"The source {source} is inside the output folder {out_dir}, which a run replaces: convert raw "
            "rows from elsewhere, or write to another --name / --out-dir."
        )
    if resolved.is_dir() and resolved in out_dir.parents:
        raise DataError(
            f"The source folder {source} holds the output folder {out_dir}: its outputs would be read back "
            "as input. Pass --out-dir outside the source folder."
        )


def refuse_foreign_files(out_dir: Path) -> None:
    """The run replaces the whole output folder: never one that holds files it did not write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(
            f"The output path {out_dir} is a file, not a folder: pass another --name or --out-dir."
        )
    if not out_dir.is_dir():
        return
    ours = set(OUTPUT_FILES)
    # hidden *.tmp files: half-written outputs of an interrupted earlier version of this command
    foreign = sorted(
        entry.name
        for entry in out_dir.iterdir()
        if entry.name not in ours and not (entry.name.startswith(".") and entry.name.endswith(".tmp"))
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DataError(
            f"The output folder {out_dir} holds files `medsft data` did not write ({shown}); a run replaces "
            "the whole folder, so move them or write to another --name."
        )


def default_name(source: str) -> str:
    path = Path(source.rstrip("/"))
    if path.suffix in DATA_SUFFIXES:
        return (
            f"{path.parent.name}_{path.stem}" if split_of(Path(path.name)) and path.parent.name else path.stem
        )
    return path.name or "data"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an output folder name inside --out-dir, or None."""
    if not name:
        return "it is empty"
    if name in {".", ".."} or "/" in name or "\\" in name or os.sep in name:
        return "it is a path, not one folder name"
    if name.startswith("."):
        return "a leading dot is kept for the run's lock and temporary folders"
    if "\x00" in name:
        return "it holds a NUL character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds bytes that are not UTF-8"
    return None


def output_name(name: str | None, source: str) -> str:
    """--name (checked), else a name derived from --src."""
    if name is not None:
        problem = name_problem(name)
        if problem:
            raise DataError(f"--name {name!r}: {problem}; it names one folder inside --out-dir.")
        return name
    derived = default_name(source)
    problem = name_problem(derived)
    if problem:
        raise DataError(f"No output name can be derived from --src {source!r} ({problem}): pass --name.")
    return derived


# ---------------------------------------------------------------- the pipeline


def percentiles(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    import numpy as np

    array = np.asarray(values)
    summary = {f"p{q}": round(float(np.percentile(array, q)), 1) for q in (50, 90, 95, 99)}
    mean = round(float(array.mean()), 1)
    return {"min": int(array.min()), **summary, "max": int(array.max()), "mean": mean}


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


def first_rejects(rejects: list[dict[str, Any]], count: int = 3) -> str:
    text = "; ".join(f"{r['file']}:{r['line']} {r['reason']} ({r['detail']})" for r in rejects[:count])
    return " ".join(text.split())  # one line, whatever a detail holds


def refuse_empty_result(
    source: str, converted: Converted, by_reason: dict[str, int], options: DataOptions
) -> None:
    if converted.accepted:
        return
    if not converted.rows_read:
        raise DataError(f"{source} holds no rows (its files are empty or blank): nothing written.")
    counts = ", ".join(f"{reason}={count}" for reason, count in by_reason.items() if count)
    hint = ""
    if by_reason[MISSING_FIELD]:
        first_value = next((r["raw"] for r in converted.rejects if r["reason"] == MISSING_FIELD), "")
        fields = f"{options.question_field}/{options.think_field}/{options.answer_field}"
        hint = (
            f" The rows lack the fields {fields}: name the right ones with --question-field, --think-field "
            f"and --answer-field (a row: {' '.join(first_value[:200].split())})."
        )
    raise DataError(
        f"0 of {converted.rows_read} rows converted ({counts}); nothing written. "
        f"First: {first_rejects(converted.rejects, 1)}.{hint}"
    )


def length_check_note(options: DataOptions, tokenizer: PreTrainedTokenizerBase | None) -> str:
    if options.length_limit is None:
        return "no length limit (--max-length none): training still applies its recipe's max_length"
    if tokenizer is None:
        return "not applied here (no tokenizer): training applies max_length when it starts"
    return f"rendered conversation <= {options.length_limit} tokens"


def prepare(
    source: str,
    out_dir: Path,
    options: DataOptions = DataOptions(),
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Convert `source` into out_dir/{train,val,rejects}.jsonl + report.json, replacing the folder as one unit
    (a lock keeps other runs out; SIGINT/SIGTERM leave the previous set as it was). Returns the report."""
    out_dir = Path(out_dir).expanduser().resolve()
    written = False

    def outcome() -> str:
        return (
            f"the new set was written to {out_dir}"
            if written
            else f"nothing written; {out_dir} left as it was"
        )

    with exit_on_signal(outcome):
        local = local_source(source)
        if local is not None:
            refuse_overlap(local, out_dir)
        files = resolve_source(source, local)
        if local is None:
            refuse_overlap(files.root, out_dir)
        with folder_lock(out_dir):
            refuse_foreign_files(out_dir)
            for stale in remove_stale_temporaries(out_dir):
                log.info("removed %s, left by an interrupted run", stale)
            report, texts = convert_source(source, files, options, tokenizer, strict)

            def write(folder: Path) -> None:
                for name, text in texts.items():
                    (folder / name).write_bytes(text.encode("utf-8"))

            replace_folder(out_dir, write)
            written = True
    return report


def convert_source(
    source: str,
    files: SourceFiles,
    options: DataOptions,
    tokenizer: PreTrainedTokenizerBase | None,
    strict: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(report, {file name: text}) of the whole output set, or a DataError; nothing is written here."""
    inputs, source_rows = [], []
    for file, split in files.chosen:
        name = display_name(file.relative_to(files.root))
        rows, digest = read_file_rows(file, name, split)
        inputs.append({"file": name, "sha256": digest, "bytes": file.stat().st_size, "split": split})
        source_rows += rows
    keep_splits = any(split for _, split in files.chosen)
    converted = convert_rows(source_rows, options, tokenizer)
    rows_read, accepted, rejects = converted.rows_read, converted.accepted, converted.rejects
    by_reason = {reason: sum(r["reason"] == reason for r in rejects) for reason in REASONS}
    if strict and rejects:
        counts = ", ".join(f"{reason}={count}" for reason, count in by_reason.items() if count)
        raise DataError(
            f"--strict: {len(rejects)} of {rows_read} rows rejected ({counts}); nothing written. "
            f"First: {first_rejects(rejects)}. Run without --strict to write them all to rejects.jsonl."
        )
    refuse_empty_result(source, converted, by_reason, options)

    if keep_splits:
        val_indices = {i for i, (row, _, _) in enumerate(accepted) if row.split == "val"}
    else:
        val_indices = split_rows(len(accepted), options.val_ratio, options.seed)
    splits = {
        "train": [{"messages": m} for i, (_, m, _) in enumerate(accepted) if i not in val_indices],
        "val": [{"messages": m} for i, (_, m, _) in enumerate(accepted) if i in val_indices],
    }
    texts, outputs = {}, {}
    for name, rows in (*splits.items(), ("rejects", rejects)):
        text = "".join(dumps_line(row) for row in rows)
        texts[f"{name}.jsonl"] = text
        outputs[f"{name}.jsonl"] = {"rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}

    measured = [length for _, _, length in accepted if length is not None]
    measured += [r["tokens"] for r in rejects if r["tokens"] is not None]
    report = {
        "source": source,
        "inputs": inputs,
        "skipped_files": files.skipped,
        "options": asdict(options),
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
        "length_check": length_check_note(options, tokenizer),
        "rows": {"read": rows_read, "converted": len(accepted), "rejected": len(rejects)},
        "rejected_by_reason": by_reason,
        "splits": {"kept_from_source": keep_splits, "train": len(splits["train"]), "val": len(splits["val"])},
        "token_length": percentiles(sorted(measured)),
        "outputs": outputs,
    }
    texts["report.json"] = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    return report, texts


def summary_lines(report: dict[str, Any], out_dir: Path) -> list[str]:
    rows = report["rows"]
    lines = [
        f"source: {report['source']}",
        *(f"  input {i['file']}  sha256 {i['sha256']}" for i in report["inputs"]),
        *(f"  not read: {entry['file']} ({entry['reason']})" for entry in report["skipped_files"]),
        f"rows read {rows['read']} = converted {rows['converted']} + rejected {rows['rejected']}",
        *(f"  rejected {reason}: {n}" for reason, n in report["rejected_by_reason"].items() if n),
        f"split ({'kept from source' if report['splits']['kept_from_source'] else 'seeded'}): "
        f"train {report['splits']['train']}, val {report['splits']['val']}",
        f"length check: {report['length_check']}",
    ]
    if report["token_length"]:
        lines.append("token length: " + ", ".join(f"{k} {v:g}" for k, v in report["token_length"].items()))
    lines += [f"  wrote {out_dir / name}  sha256 {o['sha256']}" for name, o in report["outputs"].items()]
    lines.append(f"  wrote {out_dir / 'report.json'}")
    return lines


def load_length_tokenizer(source: str | Path | None = None) -> PreTrainedTokenizerBase:
    """`source` (else the bundled Qwen3 tokenizer), which needs a chat template to measure conversations."""
    from medsft.model import DATA_TOKENIZER_SETTING, ModelSourceError, load_tokenizer

    source = source or bundled_tokenizer_dir()
    advice = f"Pass a local tokenizer folder: {DATA_TOKENIZER_SETTING.advice()}."
    if Path(source).is_dir() and not (Path(source) / "tokenizer_config.json").is_file():
        raise DataError(f"{str(source)!r} holds no tokenizer (no tokenizer_config.json in it). {advice}")
    try:
        tokenizer = load_tokenizer(source, setting=DATA_TOKENIZER_SETTING)
    except ModelSourceError:
        raise  # it names the source and how to pass a folder instead
    except (OSError, ValueError) as error:
        raise DataError(f"Could not load the tokenizer {str(source)!r}: {error} {advice}") from error
    if not tokenizer.chat_template:
        raise DataError(
            f"The tokenizer {str(source)!r} has no chat template to measure conversations with. {advice}"
        )
    return tokenizer


def max_length_argument(text: str) -> int | None:
    """--max-length: a number of tokens (at least 1), or `none` for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or none, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 token, not {value}; `--max-length none` turns the length check off"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsft data",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--src", default=DEFAULT_SOURCE, help="ModelScope dataset id, or a local file/folder")
    parser.add_argument("--name", help="output folder inside --out-dir (derived from --src when not given)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=processed_dir(),
        help="parent of the output folder ($MEDSFT_DATA_DIR, else data/processed in the current folder)",
    )
    parser.add_argument(
        "--tokenizer",
        help="tokenizer folder or model id to measure conversations with (default: the bundled Qwen3 one)",
    )
    parser.add_argument(
        "--max-length",
        type=max_length_argument,
        default=DataOptions.max_length,
        help="most tokens per conversation; `none`: no limit (and no measuring without --tokenizer)",
    )
    parser.add_argument(
        "--system-prompt", default=DEFAULT_SYSTEM_PROMPT, help='"" leaves the system turn out'
    )
    parser.add_argument(
        "--question-field", default=DataOptions.question_field, help="raw field of the question"
    )
    parser.add_argument("--think-field", default=DataOptions.think_field, help="raw field of the reasoning")
    parser.add_argument("--answer-field", default=DataOptions.answer_field, help="raw field of the answer")
    parser.add_argument(
        "--val-ratio", type=float, default=DataOptions.val_ratio, help="share of rows for val.jsonl"
    )
    parser.add_argument("--seed", type=int, default=DataOptions.seed, help="seed of the train/val split")
    parser.add_argument("--strict", action="store_true", help="fail (writing nothing) if any row is rejected")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.val_ratio < 1:
        parser.error("--val-ratio must be in [0, 1)")
    for flag in ("question_field", "think_field", "answer_field", "system_prompt", "src"):
        try:
            getattr(args, flag).encode("utf-8")
        except UnicodeEncodeError:
            parser.error(f"--{flag.replace('_', '-')} holds bytes that are not UTF-8 text")
    for flag in ("question_field", "think_field", "answer_field"):
        if not getattr(args, flag):
            parser.error(f"--{flag.replace('_', '-')} is empty")
    options = DataOptions(
        question_field=args.question_field,
        think_field=args.think_field,
        answer_field=args.answer_field,
        system_prompt=args.system_prompt,
        max_length=args.max_length,
        val_ratio=args.val_ratio,
        seed=args.seed,
    )
    out_dir = args.out_dir / output_name(args.name, args.src)
    report = None

    def outcome() -> str:
        return f"the new set was written to {out_dir}" if report else "nothing written"

    with exit_on_signal(outcome):  # prepare guards its own part; this covers loading and the summary
        measure = args.tokenizer is not None or args.max_length is not None
        tokenizer = load_length_tokenizer(args.tokenizer) if measure else None
        report = prepare(args.src, out_dir, options, tokenizer=tokenizer, strict=args.strict)
        for line in summary_lines(report, out_dir):
            log.info(line)
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("data", main, sys.argv[1:]))
