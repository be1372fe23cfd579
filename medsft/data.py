"""`medsft data`: raw {question, think, answer} rows -> chat `messages` rows for SFT, losing nothing.

With `--kind mcq`: multiple-choice files -> prompt + gold rows for GRPO (medsft.mcq_data), accounted alike.

Every non-blank input row ends up in train.jsonl / val.jsonl or in rejects.jsonl with a stable reason code,
and report.json proves it (rows read = converted + rejected). The four files are one set: a run writes them
into a temporary folder and swaps it in whole (medsft.atomic_folder), under a lock, so a reader sees the
previous set or the new one, never a mix. This module is the command: its options, the run (`prepare`, or
`prepare_mixture` for a mixture file of several sources, medsft.mixture), the output set and its report. The
rules it applies live in medsft.sources (which files), medsft.readers (their rows) and medsft.conversion (row
-> messages or a reject), reused without this command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers import HfArgumentParser

from medsft.arguments import OptionError, command_parser, flag, option, parse
from medsft.atomic_folder import exit_on_signal, folder_lock, remove_stale_temporaries, replace_folder
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, is_non_thinking
from medsft.conversion import MISSING_FIELD, REASONS, Converted, DataOptions, convert_rows, split_rows
from medsft.decontamination import BenchmarkIndex
from medsft.jsonl import dumps_line
from medsft.mcq_data import DEFAULT_DECONTAMINATION, MCQ_REASONS, Mode, read_mcq_rows
from medsft.mixture import (
    MIXTURE_REASONS,
    SAMPLED_OUT,
    Mixture,
    benchmark_index,
    build_mixture,
    load_mixture,
    mixture_path,
    resolve_mixture_source,
    source_location,
)
from medsft.paths import bundled_tokenizer_dir, name_problem, processed_dir
from medsft.readers import DataError
from medsft.sources import (
    DATA_SUFFIXES,
    DEFAULT_SOURCE,
    SourceFiles,
    local_source,
    read_source_rows,
    resolve_source,
    split_of,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

OUTPUT_FILES = ("train.jsonl", "val.jsonl", "rejects.jsonl", "report.json")


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


def percentiles(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    import numpy as np

    array = np.asarray(values)
    summary = {f"p{q}": round(float(np.percentile(array, q)), 1) for q in (50, 90, 95, 99)}
    mean = round(float(array.mean()), 1)
    return {"min": int(array.min()), **summary, "max": int(array.max()), "mean": mean}


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

    def plan() -> Callable[[], tuple[dict[str, Any], dict[str, str]]]:
        local = local_source(source)
        if local is not None:
            refuse_overlap(local, out_dir)
        files = resolve_source(source, local)
        if local is None:
            refuse_overlap(files.root, out_dir)
        return lambda: convert_source(source, files, options, tokenizer, strict)

    return write_output_set(out_dir, plan)


def prepare_mixture(
    mixture_file: str | Path,
    out_dir: Path,
    options: DataOptions = DataOptions(),
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Convert every source of a mixture file (medsft.mixture) into one output set, as `prepare` does one."""
    out_dir = Path(out_dir).expanduser().resolve()
    mixture = load_mixture(mixture_file)
    options = replace(options, val_ratio=mixture.val_ratio, seed=mixture.seed)

    def plan() -> Callable[[], tuple[dict[str, Any], dict[str, str]]]:
        files = []
        for source in mixture.sources:
            source_files = resolve_mixture_source(mixture, source)
            refuse_overlap(local_source(source_location(mixture, source)) or source_files.root, out_dir)
            files.append(source_files)
        index = benchmark_index(mixture)
        return lambda: convert_mixture(mixture, files, options, tokenizer, index, strict)

    return write_output_set(out_dir, plan)


def write_output_set(
    out_dir: Path, plan: Callable[[], Callable[[], tuple[dict[str, Any], dict[str, str]]]]
) -> dict[str, Any]:
    """Run `plan` (resolve and check the inputs), then, under the output folder's lock, the conversion it
    returns, and swap the new set in whole. Returns the report."""
    written = False

    def mark_written() -> None:
        nonlocal written
        written = True

    def outcome() -> str:
        return (
            f"the new set was written to {out_dir}"
            if written
            else f"nothing written; {out_dir} left as it was"
        )

    with exit_on_signal(outcome):
        convert = plan()
        with folder_lock(out_dir):
            refuse_foreign_files(out_dir)
            for stale in remove_stale_temporaries(out_dir):
                log.info("removed %s, left by an interrupted run", stale)
            report, texts = convert()

            def write(folder: Path) -> None:
                for name, text in texts.items():
                    (folder / name).write_bytes(text.encode("utf-8"))

            replace_folder(out_dir, write, swapped=mark_written)
    return report


def output_texts(
    splits: dict[str, list[dict[str, Any]]],
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """{file name: text} and {file name: rows, sha256} of the train, val and rejects files."""
    texts, outputs = {}, {}
    for name, rows in splits.items():
        text = "".join(dumps_line(row) for row in rows)
        texts[f"{name}.jsonl"] = text
        outputs[f"{name}.jsonl"] = {"rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return texts, outputs


def decontamination_report(benchmarks: Sequence[str], index: BenchmarkIndex | None) -> dict[str, Any] | None:
    """What report.json says of the benchmarks kept out (None: none were)."""
    if index is None:
        return None
    return {
        "benchmarks": list(benchmarks),
        "questions_indexed": len(index),
        "stems_too_short": index.too_short,
        "rule": {"ngram": index.ngram, "threshold": index.threshold},
    }


def convert_mixture(
    mixture: Mixture,
    files: list[SourceFiles],
    options: DataOptions,
    tokenizer: PreTrainedTokenizerBase | None,
    index: BenchmarkIndex | None,
    strict: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(report, {file name: text}) of a mixture's output set, or a DataError; nothing is written here."""
    result = build_mixture(mixture, files, options, tokenizer, index)
    problems = [entry for entry in result.rejects if entry["reason"] != SAMPLED_OUT]  # weights are a choice
    if strict and problems:
        counts = Counter(entry["reason"] for entry in problems)
        raise DataError(
            f"--strict: {len(problems)} rows rejected "
            f"({', '.join(f'{k}={v}' for k, v in counts.items())}); nothing written. "
            f"First: {first_rejects(problems)}."
        )
    texts, outputs = output_texts({"train": result.train, "val": result.val, "rejects": result.rejects})
    read = sum(source["rows"]["read"] for source in result.sources)
    kept = sum(source["rows"]["kept"] for source in result.sources)
    by_reason = {reason: sum(r["reason"] == reason for r in result.rejects) for reason in MIXTURE_REASONS}
    report = {
        "mixture": mixture.file,
        "seed": mixture.seed,
        "val_ratio": mixture.val_ratio,
        # the columns are per source (below), not the command's field flags
        "options": {
            k: v
            for k, v in asdict(options).items()
            if k not in ("question_field", "think_field", "answer_field")
        },
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
        "length_check": length_check_note(options, tokenizer),
        "decontamination": decontamination_report(mixture.decontaminate, index),
        "sources": result.sources,
        "rows": {"read": read, "kept": kept, "rejected": len(result.rejects)},
        "rejected_by_reason": by_reason,
        "splits": {
            "train": len(result.train),
            "val": len(result.val),
            "non_thinking": {
                split: sum(is_non_thinking(row["messages"]) for row in rows)
                for split, rows in (("train", result.train), ("val", result.val))
            },
        },
        "token_length": percentiles(sorted(result.lengths)),
        "outputs": outputs,
    }
    texts["report.json"] = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    return report, texts


def prepare_mcq(
    source: str,
    out_dir: Path,
    options: DataOptions = DataOptions(),
    decontaminate: Sequence[str] = DEFAULT_DECONTAMINATION,
    mode: Mode = "thinking",
    tokenizer: PreTrainedTokenizerBase | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """MCQ files (the formats eval reads) -> prompt + gold rows for the GRPO stage (medsft.mcq_data), with the
    evaluated benchmarks kept out, written as one output set like `prepare`. Returns the report."""
    out_dir = Path(out_dir).expanduser().resolve()

    def plan() -> Callable[[], tuple[dict[str, Any], dict[str, str]]]:
        from medsft.decontamination import load_benchmark_index

        refuse_overlap(Path(source).expanduser(), out_dir)
        index = load_benchmark_index(list(decontaminate)) if decontaminate else None
        return lambda: convert_mcq(source, options, decontaminate, index, mode, tokenizer, strict)

    return write_output_set(out_dir, plan)


def convert_mcq(
    source: str,
    options: DataOptions,
    decontaminate: Sequence[str],
    index: BenchmarkIndex | None,
    mode: Mode,
    tokenizer: PreTrainedTokenizerBase | None,
    strict: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(report, {file name: text}) of an MCQ output set, or a DataError; nothing is written here."""
    from medsft.mcq import BenchmarkError

    try:
        result = read_mcq_rows([source], index, mode, options.system_prompt, tokenizer=tokenizer)
    except BenchmarkError as error:
        raise DataError(f"--kind mcq: {error}") from error
    by_reason = {reason: sum(r["reason"] == reason for r in result.rejects) for reason in MCQ_REASONS}
    counts = ", ".join(f"{reason}={count}" for reason, count in by_reason.items() if count)
    if strict and result.rejects:
        raise DataError(
            f"--strict: {len(result.rejects)} of {result.rows_read} questions rejected ({counts}); nothing "
            f"written. First: {first_rejects_mcq(result.rejects)}."
        )
    if not result.kept:
        raise DataError(
            f"0 of {result.rows_read} questions kept ({counts}); nothing written. "
            f"First: {first_rejects_mcq(result.rejects)}."
        )
    val_indices = split_rows(len(result.kept), options.val_ratio, options.seed)
    splits = {
        "train": [row for i, row in enumerate(result.kept) if i not in val_indices],
        "val": [row for i, row in enumerate(result.kept) if i in val_indices],
    }
    texts, outputs = output_texts({**splits, "rejects": result.rejects})
    report = {
        "source": source,
        "kind": "mcq",
        "mode": mode,
        "inputs": result.inputs,
        "skipped_files": [],
        "options": {
            "system_prompt": options.system_prompt,
            "val_ratio": options.val_ratio,
            "seed": options.seed,
        },
        "decontamination": decontamination_report(decontaminate, index),
        "rows": {"read": result.rows_read, "converted": len(result.kept), "rejected": len(result.rejects)},
        "rejected_by_reason": by_reason,
        "splits": {"kept_from_source": False, "train": len(splits["train"]), "val": len(splits["val"])},
        "outputs": outputs,
    }
    texts["report.json"] = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    return report, texts


def first_rejects_mcq(rejects: list[dict[str, Any]], count: int = 3) -> str:
    text = "; ".join(f"{r['file']} row {r['row']} {r['reason']} ({r['detail']})" for r in rejects[:count])
    return " ".join(text.split())


def mixture_summary_lines(report: dict[str, Any], out_dir: Path) -> list[str]:
    rows = report["rows"]
    lines = [f"mixture: {report['mixture']}"]
    for source in report["sources"]:
        counts = source["rows"]
        reasons = ", ".join(f"{reason} {n}" for reason, n in source["rejected_by_reason"].items())
        lines.append(
            f"  {source['name']}: read {counts['read']} = kept {counts['kept']} "
            f"+ rejected {counts['rejected']}"
            f"{f' ({reasons})' if reasons else ''}; train {source['kept']['train']} "
            f"(x{source['weight']:g} -> {source['after_weighting']['train']}), val {source['kept']['val']}, "
            f"non-thinking {source['kept']['non_thinking']}"
        )
    lines += [
        f"rows read {rows['read']} = kept {rows['kept']} + rejected {rows['rejected']}",
        f"split: train {report['splits']['train']}, val {report['splits']['val']} (each source's share)",
        f"length check: {report['length_check']}",
    ]
    lines += [f"  wrote {out_dir / name}  sha256 {o['sha256']}" for name, o in report["outputs"].items()]
    lines.append(f"  wrote {out_dir / 'report.json'}")
    return lines


def convert_source(
    source: str,
    files: SourceFiles,
    options: DataOptions,
    tokenizer: PreTrainedTokenizerBase | None,
    strict: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """(report, {file name: text}) of the whole output set, or a DataError; nothing is written here."""
    inputs, source_rows = read_source_rows(files)
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
    texts, outputs = output_texts({**splits, "rejects": rejects})

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
        *([f"length check: {report['length_check']}"] if "length_check" in report else []),
    ]
    if report.get("decontamination"):
        lines.append(f"decontaminated against: {', '.join(report['decontamination']['benchmarks'])}")
    if report.get("token_length"):
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


class TokenLimit(int):
    """The type of --max-length: a number of tokens, or `none` for no limit (None)."""

    def __new__(cls, text: str | int) -> int | None:  # type: ignore[misc]
        if isinstance(text, str) and text.strip().lower() == "none":
            return None
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of tokens or none, not {text!r}") from None


@dataclass
class DataArguments:
    """The options of `medsft data`: where the rows come from, how they are converted, where they go."""

    src: str = option("ModelScope dataset id, or a local file/folder", DEFAULT_SOURCE)
    mixture: Path | None = option(
        "a mixture file, or the name of a shipped one (recipes/data/*.yaml), instead of --src: several "
        "sources with their columns, weights, thinking modes, seed, val_ratio and benchmarks to keep out"
    )
    name: str | None = option("output folder inside --out-dir (derived from --src when not given)")
    out_dir: Path = option(
        "parent of the output folder ($MEDSFT_DATA_DIR, else data/processed in the current folder)",
        default_factory=processed_dir,
    )
    tokenizer: str | None = option(
        "tokenizer folder or model id to measure conversations with (default: the bundled Qwen3 one)"
    )
    max_length: TokenLimit | None = option(
        "most tokens per conversation; `none`: no limit (and no measuring without --tokenizer)",
        DataOptions.max_length,
    )
    system_prompt: str = option('"" leaves the system turn out', DEFAULT_SYSTEM_PROMPT)
    question_field: str = option("raw field of the question", DataOptions.question_field)
    think_field: str = option("raw field of the reasoning", DataOptions.think_field)
    answer_field: str = option("raw field of the answer", DataOptions.answer_field)
    val_ratio: float = option("share of rows for val.jsonl", DataOptions.val_ratio)
    seed: int = option("seed of the train/val split", DataOptions.seed)
    strict: bool = option("fail (writing nothing) if any row is rejected", False)
    kind: Literal["chat", "mcq"] = option(
        "chat: {question, think, answer} rows -> messages (SFT); mcq: multiple-choice files in the "
        "formats `medsft eval --mcq-file` reads -> prompt + gold rows (GRPO)",
        "chat",
    )
    decontaminate: list[str] = option(
        "--kind mcq: benchmarks whose questions are never training prompts (xmedbench, one of its "
        "sources, or benchmark files); `none` turns it off",
        default_factory=lambda: list(DEFAULT_DECONTAMINATION),
        metavar="BENCHMARK",
    )
    mcq_mode: Mode = option("--kind mcq: eval's prompt of that mode", "thinking")

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 1:
            problem = (
                f"must be at least 1 token, not {self.max_length}; `--max-length none` turns the check off"
            )
            raise OptionError(f"--max-length {problem}.", f"argument --max-length: {problem}")
        if not 0 <= self.val_ratio < 1:
            raise OptionError("--val-ratio must be in [0, 1)")
        for name in ("question_field", "think_field", "answer_field", "system_prompt", "src"):
            try:
                getattr(self, name).encode("utf-8")
            except UnicodeEncodeError:
                raise OptionError(f"{flag(name)} holds bytes that are not UTF-8 text") from None
        for name in ("question_field", "think_field", "answer_field"):
            if not getattr(self, name):
                raise OptionError(f"{flag(name)} is empty")
        if self.mixture:  # a mixture file holds these itself: a flag beside it would be silently ignored
            for name in self.changed(
                "src", "question_field", "think_field", "answer_field", "seed", "val_ratio"
            ):
                raise OptionError(
                    f"{flag(name)} does not apply to --mixture (set it in the mixture file: docs/data.md)"
                )
        if self.kind == "mcq":  # the chat conversion's flags would be silently ignored
            if self.mixture:
                raise OptionError("--kind mcq reads --src, not --mixture")
            if not self.changed("src"):
                raise OptionError("--kind mcq needs --src: MCQ files, a folder or a glob pattern")
            for name in self.changed("question_field", "think_field", "answer_field"):
                raise OptionError(f"{flag(name)} does not apply to --kind mcq")

    def changed(self, *names: str) -> list[str]:
        """Those of the options `names` set to other than their defaults."""
        defaults = {spec.name: spec.default for spec in fields(self)}
        return [name for name in names if getattr(self, name) != defaults[name]]

    def conversion_options(self) -> DataOptions:
        return DataOptions(**{spec.name: getattr(self, spec.name) for spec in fields(DataOptions)})


def build_parser() -> HfArgumentParser:
    return command_parser("medsft data", __doc__.splitlines()[0], DataArguments)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse(build_parser(), argv)
    options = args.conversion_options()
    source_name = mixture_path(args.mixture).stem if args.mixture else args.src
    out_dir = args.out_dir / output_name(args.name, source_name)
    report = None

    def outcome() -> str:
        return f"the new set was written to {out_dir}" if report else "nothing written"

    with exit_on_signal(outcome):  # prepare guards its own part; this covers loading and the summary
        measure = args.tokenizer is not None or args.max_length is not None
        tokenizer = load_length_tokenizer(args.tokenizer) if measure else None
        if args.kind == "mcq":
            decontaminate = [] if args.decontaminate == ["none"] else args.decontaminate
            report = prepare_mcq(
                args.src,
                out_dir,
                options,
                decontaminate,
                args.mcq_mode,
                tokenizer=tokenizer,
                strict=args.strict,
            )
            lines = summary_lines(report, out_dir)
        elif args.mixture:
            report = prepare_mixture(args.mixture, out_dir, options, tokenizer=tokenizer, strict=args.strict)
            lines = mixture_summary_lines(report, out_dir)
        else:
            report = prepare(args.src, out_dir, options, tokenizer=tokenizer, strict=args.strict)
            lines = summary_lines(report, out_dir)
        for line in lines:
            log.info(line)
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("data", main, sys.argv[1:]))
