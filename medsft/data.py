"""`medsft data`: raw {question, think, answer} rows -> chat `messages` rows for SFT, losing nothing.

Every non-blank input row ends up in train.jsonl / val.jsonl or in rejects.jsonl with a stable reason code,
and report.json proves it (rows read = converted + rejected). The public helpers (convert_row,
conversation_token_length, find_overlong, prepare) are the single definition of the rules, reused by training.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.chat_format import CHAT_TOKENS, DEFAULT_SYSTEM_PROMPT, THINK_TAGS, Conversation, build_messages
from medsft.errors import MedsftError
from medsft.jsonl import dumps_line, write_json, write_text_atomic
from medsft.paths import bundled_tokenizer_dir, processed_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "krisfu/delicate_medical_r1_data"
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
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

# Stable reject reason codes (documented in data/README.md).
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
NON_STRING_FIELD = "non_string_field"
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
    max_length: int = 2048  # 0 turns the length check off
    val_ratio: float = 0.1
    seed: int = 42


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


def convert_row(record: Any, options: DataOptions = DataOptions()) -> Conversation:
    """A raw record -> [system, user, assistant] messages, or RowRejected with a reason code."""
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
        texts[role] = normalise_text(value)
        if not texts[role]:
            raise RowRejected(EMPTY_FIELD, f"field {field!r} is empty or whitespace")
    for role, field in fields.items():
        if role != "question" and any(tag in texts[role] for tag in THINK_TAGS):
            tags = " or ".join(THINK_TAGS)
            raise RowRejected(THINK_TAG_IN_TEXT, f"field {field!r} already contains the reasoning tag {tags}")
        found = [token for token in CHAT_TOKENS if token in texts[role]]
        if found:
            raise RowRejected(CHAT_TOKEN_IN_TEXT, f"field {field!r} contains the chat token {found[0]}")
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


# ---------------------------------------------------------------- reading sources


def split_of(path: Path) -> str | None:
    """'train' / 'val' / 'test' from a path such as train.jsonl, data/val-00000.parquet, test/part.json."""
    words = set(re.split(r"[-_./]", path.with_suffix("").as_posix().lower()))
    found = [split for split, names in SPLIT_WORDS.items() if words & names]
    return found[0] if len(found) == 1 else None


def choose_files(root: Path, files: list[Path]) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """(file, kept split) pairs to read, and the files left out.

    Both train and val files present: keep the source's split and leave out the rest. Otherwise pool
    everything except test files (held out for evaluation) and split it here."""
    splits = {file: split_of(file.relative_to(root)) for file in files}
    keep = {"train", "val"} <= set(splits.values())
    chosen = [
        file for file in files if splits[file] in ({"train", "val"} if keep else {"train", "val", None})
    ]
    left_out = [file.relative_to(root).as_posix() for file in files if file not in chosen]
    return [(file, splits[file] if keep else None) for file in chosen], left_out


def jsonl_rows(data: bytes, file: str, split: str | None) -> Iterator[SourceRow]:
    """Decoded per line, so one bad line is one reject; BOM and CRLF are normalised; blank lines skipped."""
    for number, line_bytes in enumerate(data.split(b"\n"), start=1):
        line_bytes = line_bytes.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")
        if not line_bytes.strip():
            continue
        try:
            text = line_bytes.decode("utf-8")
        except UnicodeDecodeError as error:
            raw = line_bytes.decode("utf-8", errors="backslashreplace")
            yield SourceRow(file, number, split, raw, error=RowRejected(INVALID_UTF8, str(error)))
            continue
        try:
            yield SourceRow(file, number, split, text, value=json.loads(text))
        except json.JSONDecodeError as error:
            yield SourceRow(file, number, split, text, error=RowRejected(INVALID_JSON, str(error)))


def record_rows(records: list, file: str, split: str | None) -> Iterator[SourceRow]:
    for number, record in enumerate(records, start=1):
        raw = json.dumps(record, ensure_ascii=False, default=str)
        yield SourceRow(file, number, split, raw, value=record)


def read_file_rows(path: Path, file: str, split: str | None) -> Iterator[SourceRow]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from record_rows(pq.read_table(path).to_pylist(), file, split)
        return
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            whole = json.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            whole = None  # not one JSON document: read it as JSON Lines (many hub ".json" files are)
        if isinstance(whole, list):
            yield from record_rows(whole, file, split)
            return
    yield from jsonl_rows(data, file, split)


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


def resolve_source(source: str) -> tuple[Path, list[Path]]:
    """(root, data files) of a local file or folder, or of a ModelScope dataset id (downloaded)."""
    path = Path(source).expanduser()
    if not path.exists():
        looks_local = source.startswith((".", "/", "~")) or path.suffix in DATA_SUFFIXES
        if looks_local or not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
            raise DataError(f"Source {source!r} does not exist (expected a data file or folder).")
        path = download_dataset(source)
    if path.is_file():
        if path.suffix not in DATA_SUFFIXES:
            raise DataError(f"Source {source!r}: unsupported file type (use {', '.join(DATA_SUFFIXES)}).")
        return path.parent, [path]
    files = sorted(
        file
        for file in path.rglob("*")
        if file.is_file()
        and file.suffix in DATA_SUFFIXES
        and file.name not in METADATA_FILES
        and not any(part.startswith(".") for part in file.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"Source {source!r} holds no {'/'.join(DATA_SUFFIXES)} files.")
    return path, files


def default_name(source: str) -> str:
    path = Path(source.rstrip("/"))
    if path.suffix in DATA_SUFFIXES:
        return (
            f"{path.parent.name}_{path.stem}" if split_of(Path(path.name)) and path.parent.name else path.stem
        )
    return path.name or "data"


# ---------------------------------------------------------------- the pipeline


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def convert_rows(
    rows: Iterable[SourceRow], options: DataOptions, tokenizer: PreTrainedTokenizerBase | None
) -> Converted:
    """Apply every rule in order (parse, fields, tags, duplicates, length); each row is kept or rejected."""
    result, seen = Converted(), {}
    for row in rows:
        result.rows_read += 1
        try:
            if row.error:
                raise row.error
            messages = convert_row(row.value, options)
            key = json.dumps(messages, ensure_ascii=False)
            if key in seen:
                raise RowRejected(DUPLICATE, f"same question/think/answer as {seen[key]}")
            seen[key] = f"{row.file}:{row.line}"
            length = conversation_token_length(tokenizer, messages) if tokenizer is not None else None
            if length is not None and options.max_length and length > options.max_length:
                raise RowRejected(OVERLONG, f"{length} tokens > max_length {options.max_length}", length)
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


def prepare(
    source: str,
    out_dir: Path,
    options: DataOptions = DataOptions(),
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Convert `source` into out_dir/{train,val,rejects}.jsonl + report.json; returns the report."""
    root, files = resolve_source(source)
    picked_one_file = Path(source).expanduser().is_file()
    chosen, ignored = ([(files[0], None)], []) if picked_one_file else choose_files(root, files)
    keep_splits = any(split for _, split in chosen)
    if not chosen:
        raise DataError(f"Source {source!r} holds only test files ({', '.join(ignored)}): pass one of them.")
    inputs = [
        {
            "file": file.relative_to(root).as_posix(),
            "sha256": sha256_file(file),
            "bytes": file.stat().st_size,
            "split": split,
        }
        for file, split in chosen
    ]
    source_rows = (
        row
        for (file, split), entry in zip(chosen, inputs, strict=True)
        for row in read_file_rows(file, entry["file"], split)
    )
    converted = convert_rows(source_rows, options, tokenizer)
    rows_read, accepted, rejects = converted.rows_read, converted.accepted, converted.rejects
    by_reason = {reason: sum(r["reason"] == reason for r in rejects) for reason in REASONS}
    if strict and rejects:
        first = "; ".join(f"{r['file']}:{r['line']} {r['reason']} ({r['detail']})" for r in rejects[:3])
        counts = ", ".join(f"{reason}={count}" for reason, count in by_reason.items() if count)
        raise DataError(
            f"--strict: {len(rejects)} of {rows_read} rows rejected ({counts}); nothing written. "
            f"First: {first}. Run without --strict to write them all to rejects.jsonl."
        )

    if keep_splits:
        val_indices = {i for i, (row, _, _) in enumerate(accepted) if row.split == "val"}
    else:
        val_indices = split_rows(len(accepted), options.val_ratio, options.seed)
    splits = {
        "train": [{"messages": m} for i, (_, m, _) in enumerate(accepted) if i not in val_indices],
        "val": [{"messages": m} for i, (_, m, _) in enumerate(accepted) if i in val_indices],
    }
    outputs = {}
    for name, rows in (*splits.items(), ("rejects", rejects)):
        text = "".join(dumps_line(row) for row in rows)
        write_text_atomic(out_dir / f"{name}.jsonl", text)
        outputs[f"{name}.jsonl"] = {"rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}

    measured = [length for _, _, length in accepted if length is not None]
    measured += [r["tokens"] for r in rejects if r["tokens"] is not None]
    report = {
        "source": source,
        "inputs": inputs,
        "ignored_files": ignored,
        "options": asdict(options),
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
        "length_check": (
            f"rendered conversation <= {options.max_length} tokens"
            if tokenizer is not None and options.max_length
            else "not applied here (no tokenizer or max_length 0): training applies it when it starts"
        ),
        "rows": {"read": rows_read, "converted": len(accepted), "rejected": len(rejects)},
        "rejected_by_reason": by_reason,
        "splits": {"kept_from_source": keep_splits, "train": len(splits["train"]), "val": len(splits["val"])},
        "token_length": percentiles(sorted(measured)),
        "outputs": outputs,
    }
    write_json(out_dir / "report.json", report)
    return report


def summary_lines(report: dict[str, Any], out_dir: Path) -> list[str]:
    rows = report["rows"]
    lines = [
        f"source: {report['source']}",
        *(f"  input {i['file']}  sha256 {i['sha256']}" for i in report["inputs"]),
        *(f"  not read (a test split, or outside train/val): {name}" for name in report["ignored_files"]),
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
    from medsft.model import ModelSourceError, load_tokenizer

    source = source or bundled_tokenizer_dir()
    advice = "Pass a local tokenizer folder: make data TOKENIZER=DIR (or --tokenizer DIR)."
    if Path(source).is_dir() and not (Path(source) / "tokenizer_config.json").is_file():
        raise DataError(f"{str(source)!r} holds no tokenizer (no tokenizer_config.json in it). {advice}")
    try:
        tokenizer = load_tokenizer(source)
    except (ModelSourceError, OSError, ValueError) as error:
        raise DataError(f"Could not load the tokenizer {str(source)!r}: {error} {advice}") from error
    if not tokenizer.chat_template:
        raise DataError(
            f"The tokenizer {str(source)!r} has no chat template to measure conversations with. {advice}"
        )
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="medsft data",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--src", default=DEFAULT_SOURCE, help="ModelScope dataset id, or a local file/folder")
    parser.add_argument("--name", help="output subfolder (derived from --src when not given)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=processed_dir(),
        help="parent of the output subfolder ($MEDSFT_DATA_DIR, else data/processed in the current folder)",
    )
    parser.add_argument(
        "--tokenizer",
        help="tokenizer folder or model id to measure conversations with (default: the bundled Qwen3 one)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=DataOptions.max_length,
        help="most tokens per conversation; 0: no limit",
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
    args = parser.parse_args(argv)
    if not 0 <= args.val_ratio < 1:
        parser.error("--val-ratio must be in [0, 1)")
    options = DataOptions(
        question_field=args.question_field,
        think_field=args.think_field,
        answer_field=args.answer_field,
        system_prompt=args.system_prompt,
        max_length=args.max_length,
        val_ratio=args.val_ratio,
        seed=args.seed,
    )
    out_dir = args.out_dir / (args.name or default_name(args.src))
    tokenizer = load_length_tokenizer(args.tokenizer)
    report = prepare(args.src, out_dir, options, tokenizer=tokenizer, strict=args.strict)
    for line in summary_lines(report, out_dir):
        log.info(line)
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("data", main, sys.argv[1:]))
