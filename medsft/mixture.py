"""Dataset mixtures: several sources, each with its columns, weight and thinking mode, into one train/val set.

A mixture file (YAML, recipes/data/*.yaml) lists `datasets` (id, path, config, split, columns, weight,
thinking, no_think_ratio), a `seed`, a `val_ratio` and the benchmarks to `decontaminate` against. Each source
is read and converted by the same rules as one set (medsft.sources, medsft.conversion); then, source by source
in the file's order: rows overlapping a listed benchmark question are rejected (`benchmark_overlap`), rows
whose normalised question an earlier source already kept are rejected (`duplicate`), a weight below 1 keeps
that seeded share (the rest `sampled_out`), a share `no_think_ratio` of the rows drops its reasoning (the
non-thinking mode), the val split takes `val_ratio` of each source's rows, and a weight above 1 repeats train
rows. Every row read is kept or rejected with its reason, and the counts are checked to add up.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medsft.chat_format import is_non_thinking, without_reasoning
from medsft.conversion import DUPLICATE, REASONS, DataOptions, convert_rows, split_rows
from medsft.decontamination import BenchmarkIndex, load_benchmark_index, normalise
from medsft.paths import recipes_dir
from medsft.readers import DataError
from medsft.sources import SourceFiles, display_name, local_source, read_source_rows, resolve_source, split_of
from medsft.yaml_files import DuplicateKey, load_yaml

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BENCHMARK_OVERLAP = "benchmark_overlap"
SAMPLED_OUT = "sampled_out"
MIXTURE_REASONS = (*REASONS, BENCHMARK_OVERLAP, SAMPLED_OUT)
COLUMN_ROLES = ("question", "think", "answer")
MIXTURE_KEYS = ("datasets", "seed", "val_ratio", "decontaminate")
SOURCE_KEYS = ("id", "path", "config", "split", "columns", "weight", "thinking", "no_think_ratio")


@dataclass(frozen=True)
class KnownSource:
    """A dataset medsft knows: its columns, and the file each config names (read from its dataset card)."""

    columns: dict[str, str]
    configs: dict[str, str] = field(default_factory=dict)


KNOWN_SOURCES = {
    "krisfu/delicate_medical_r1_data": KnownSource(
        {"question": "question", "think": "think", "answer": "answer"}
    ),
    "FreedomIntelligence/medical-o1-reasoning-SFT": KnownSource(
        {"question": "Question", "think": "Complex_CoT", "answer": "Response"},
        {"en": "medical_o1_sft.json", "zh": "medical_o1_sft_Chinese.json"},
    ),
    "FreedomIntelligence/Medical-R1-Distill-Data-Chinese": KnownSource(
        {"question": "question", "think": "reasoning (reasoning_content)", "answer": "response (content)"}
    ),
}


@dataclass(frozen=True)
class MixtureSource:
    id: str  # a ModelScope id, hf:<id>, or a local file/folder
    path: str | None = None  # a local copy of `id`'s files (offline): read instead of downloading
    config: str | None = None  # a known source's config, else a file or folder inside the source
    split: str | None = None  # read only the source's files of this split (train / val / test)
    columns: dict[str, str] | None = None  # {question, think, answer} -> the source's field names
    weight: float = 1.0
    thinking: bool = True  # false: the rows train the non-thinking mode (their reasoning, if any, is dropped)
    no_think_ratio: float = 0.0  # share of a thinking source's rows trained in the non-thinking mode

    @property
    def name(self) -> str:
        """How reports and rejects name the source."""
        return f"{self.id}:{self.config}" if self.config else self.id

    def data_options(self, base: DataOptions) -> DataOptions:
        known = KNOWN_SOURCES.get(self.id.removeprefix("hf:"))
        columns = {**(known.columns if known else {}), **(self.columns or {})}
        return DataOptions(
            question_field=columns.get("question", base.question_field),
            think_field=columns.get("think", base.think_field) if self.thinking else None,
            answer_field=columns.get("answer", base.answer_field),
            system_prompt=base.system_prompt,
            max_length=base.max_length,
            val_ratio=base.val_ratio,
            seed=base.seed,
        )


@dataclass(frozen=True)
class Mixture:
    file: str
    sources: tuple[MixtureSource, ...]
    seed: int = 42
    val_ratio: float = 0.1
    decontaminate: tuple[str, ...] = ()


class MixtureError(DataError):
    """A mixture file that cannot be used: its path, a key or a value (one line naming it)."""


def check_type(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise MixtureError(f"{where}: expected {what}, not {value!r}.")
    if not isinstance(value, kind):
        raise MixtureError(f"{where}: expected {what}, not {value!r}.")


def unknown_keys(where: str, given: dict, allowed: Sequence[str]) -> None:
    extra = [key for key in given if key not in allowed]
    if extra:
        raise MixtureError(f"{where}: unknown key {extra[0]!r} (keys: {', '.join(allowed)}).")


def parse_source(where: str, entry: Any) -> MixtureSource:
    check_type(where, entry, dict, "a mapping with at least `id`")
    unknown_keys(where, entry, SOURCE_KEYS)
    if "id" not in entry:
        raise MixtureError(f"{where}: `id` is missing (a ModelScope id, hf:<id>, or a local file or folder).")
    for key in ("id", "path", "config", "split"):
        if entry.get(key) is not None:
            check_type(f"{where}.{key}", entry[key], str, "text")
    columns = entry.get("columns")
    if columns is not None:
        check_type(f"{where}.columns", columns, dict, "a mapping of question/think/answer to field names")
        unknown_keys(f"{where}.columns", columns, COLUMN_ROLES)
        for role, name in columns.items():
            check_type(f"{where}.columns.{role}", name, str, "a field name")
    weight = entry.get("weight", 1.0)
    check_type(f"{where}.weight", weight, (int, float), "a number")
    if not (weight > 0 and math.isfinite(weight)):
        raise MixtureError(f"{where}.weight: must be above 0 (1 keeps every row), not {weight!r}.")
    thinking = entry.get("thinking", True)
    check_type(f"{where}.thinking", thinking, bool, "true or false")
    ratio = entry.get("no_think_ratio", 0.0)
    check_type(f"{where}.no_think_ratio", ratio, (int, float), "a number")
    if not 0 <= ratio <= 1:
        raise MixtureError(f"{where}.no_think_ratio: must be in [0, 1], not {ratio!r}.")
    if ratio and not thinking:
        raise MixtureError(
            f"{where}: no_think_ratio applies to a thinking source; this one has thinking: false."
        )
    source = MixtureSource(
        id=entry["id"],
        path=entry.get("path"),
        config=entry.get("config"),
        split=entry.get("split"),
        columns=columns,
        weight=float(weight),
        thinking=thinking,
        no_think_ratio=float(ratio),
    )
    known = KNOWN_SOURCES.get(source.id.removeprefix("hf:"))
    if source.config and known and known.configs and source.config not in known.configs:
        raise MixtureError(
            f"{where}.config: {source.id} has configs {', '.join(known.configs)}, not {source.config!r}."
        )
    return source


def shipped_mixtures() -> list[str]:
    return sorted(path.stem for path in (recipes_dir() / "data").glob("*.yaml"))


def mixture_path(name_or_path: str | Path) -> Path:
    """A mixture file by path, or a shipped one (recipes/data/<name>.yaml) by name."""
    path = Path(name_or_path).expanduser()
    shipped = recipes_dir() / "data" / f"{name_or_path}.yaml"
    if not path.exists() and path.suffix == "" and len(path.parts) == 1 and shipped.is_file():
        return shipped
    return path


def load_mixture(path: str | Path) -> Mixture:
    """A mixture file (a path, or the name of a shipped one), checked: unknown keys, wrong types and
    out-of-range values are one-line errors."""
    path = mixture_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        shipped = ", ".join(shipped_mixtures())
        raise MixtureError(
            f"Mixture file {path}: cannot be read ({error.strerror}); shipped mixtures: {shipped}."
        ) from None
    except UnicodeDecodeError:
        raise MixtureError(f"Mixture file {path}: not UTF-8 text.") from None
    try:
        content = load_yaml(text)
    except DuplicateKey as error:
        raise MixtureError(f"Mixture file {path}: {error}; keep one.") from None
    except yaml.YAMLError as error:
        raise MixtureError(f"Mixture file {path}: not valid YAML ({' '.join(str(error).split())}).") from None
    check_type(str(path), content, dict, "a mapping with a `datasets` list")
    unknown_keys(str(path), content, MIXTURE_KEYS)
    entries = content.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise MixtureError(f"{path}: `datasets` must be a non-empty list of sources.")
    sources = tuple(parse_source(f"{path}: datasets[{i}]", entry) for i, entry in enumerate(entries))
    names = [source.name for source in sources]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated:
        raise MixtureError(f"{path}: source {repeated!r} is listed twice (give one entry a weight instead).")
    seed = content.get("seed", 42)
    check_type(f"{path}: seed", seed, int, "an integer")
    val_ratio = content.get("val_ratio", 0.1)
    check_type(f"{path}: val_ratio", val_ratio, (int, float), "a number")
    if not 0 <= val_ratio < 1:
        raise MixtureError(f"{path}: val_ratio must be in [0, 1), not {val_ratio!r}.")
    benchmarks = content.get("decontaminate") or []
    check_type(f"{path}: decontaminate", benchmarks, list, "a list of benchmark names or paths")
    for benchmark in benchmarks:
        check_type(f"{path}: decontaminate", benchmark, str, "a benchmark name or path")
    return Mixture(str(path), sources, seed, float(val_ratio), tuple(benchmarks))


def relative_to_file(mixture: Mixture, location: str) -> str:
    """A path in a mixture file that starts with ./ or ../ is relative to the file (others: to the current
    folder, as on the command line)."""
    if location.startswith(("./", "../")):
        return str((Path(mixture.file).parent / location).resolve())
    return location


def source_location(mixture: Mixture, source: MixtureSource) -> str:
    return relative_to_file(mixture, source.path or source.id)


def resolve_mixture_source(mixture: Mixture, source: MixtureSource) -> SourceFiles:
    """The files of one source, narrowed to its config and split."""
    location = source_location(mixture, source)
    files = resolve_source(location, local_source(location))
    if source.config:
        known = KNOWN_SOURCES.get(source.id.removeprefix("hf:"))
        wanted = known.configs.get(source.config) if known and known.configs else None
        files = narrow(
            files,
            lambda name: Path(name).name == wanted if wanted else in_config(name, source.config),
            f"another config than {source.config!r}",
            f"config {source.config!r}",
            source,
        )
    if source.split:
        files = narrow(
            files,
            lambda name: split_of(Path(name)) == source.split,
            f"another split than {source.split!r}",
            f"split {source.split!r}",
            source,
        )
    return files


def in_config(name: str, config: str) -> bool:
    """A file of an unknown source's config: inside a folder of that name, or a file with that stem."""
    path = Path(name)
    return config in path.parts[:-1] or path.stem == config or path.name == config


def narrow(
    files: SourceFiles, keep: Callable[[str], bool], reason: str, wanted: str, source: MixtureSource
) -> SourceFiles:
    chosen = [
        (file, split) for file, split in files.chosen if keep(display_name(file.relative_to(files.root)))
    ]
    left = [
        {"file": display_name(file.relative_to(files.root)), "reason": reason}
        for file, split in files.chosen
        if (file, split) not in chosen
    ]
    if not chosen:
        names = ", ".join(display_name(file.relative_to(files.root)) for file, _ in files.chosen)
        raise MixtureError(f"Source {source.name}: no file of {wanted} (its files: {names}).")
    return SourceFiles(files.root, chosen, sorted([*files.skipped, *left], key=lambda entry: entry["file"]))


def source_seed(seed: int, name: str, purpose: str) -> int:
    """A seed for one source and one use, the same on every machine (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{purpose}".encode()).digest()[:8], "big")


def seeded_choice(count: int, share: float, seed: int) -> set[int]:
    """round(count * share) indices of range(count), chosen by a seeded shuffle."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[: round(count * share)])


@dataclass
class MixtureResult:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    sources: list[dict[str, Any]]  # per-source report entries
    lengths: list[int]  # token lengths measured (kept and overlong rows)


def reject(source: MixtureSource, row: Any, reason: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": source.name,
        "file": row.file,
        "line": row.line,
        "reason": reason,
        "detail": detail,
        "tokens": None,
        **extra,
        "raw": row.raw,
    }


def build_mixture(
    mixture: Mixture,
    files: Sequence[SourceFiles],
    options: DataOptions,
    tokenizer: PreTrainedTokenizerBase | None = None,
    index: BenchmarkIndex | None = None,
) -> MixtureResult:
    """Convert every source of `mixture` (its resolved `files`, in order) into one train/val set."""
    result = MixtureResult([], [], [], [], [])
    kept_questions: dict[str, str] = {}  # normalised question -> the source that kept it
    for source, source_files in zip(mixture.sources, files, strict=True):
        inputs, rows = read_source_rows(source_files)
        source_options = source.data_options(options)
        converted = convert_rows(rows, source_options, tokenizer)
        rejects = [{"source": source.name, **entry} for entry in converted.rejects]
        refuse_unconverted(source, source_options, converted.rows_read, len(converted.accepted), rejects)
        result.lengths += [length for _, _, length in converted.accepted if length is not None]
        result.lengths += [entry["tokens"] for entry in rejects if entry["tokens"] is not None]

        kept = []
        for row, messages, _ in converted.accepted:
            question = messages[-2]["content"]
            overlap = index.match(question) if index is not None else None
            if overlap is not None:
                rejects.append(
                    reject(
                        source,
                        row,
                        BENCHMARK_OVERLAP,
                        overlap.describe(),
                        benchmark=overlap.question.benchmark,
                        benchmark_question=overlap.question.text,
                    )
                )
                continue
            owner = kept_questions.get(normalise(question))  # only earlier sources are registered yet
            if owner is not None:
                rejects.append(
                    reject(source, row, DUPLICATE, f"same question as a row kept from {owner}", kept_by=owner)
                )
                continue
            kept.append((row, messages))

        if source.weight < 1:
            chosen = seeded_choice(len(kept), source.weight, source_seed(mixture.seed, source.name, "weight"))
            for position, (row, _) in enumerate(kept):
                if position not in chosen:
                    detail = f"weight {source.weight:g} keeps {len(chosen)} of {len(kept)} rows"
                    rejects.append(reject(source, row, SAMPLED_OUT, detail))
            kept = [pair for position, pair in enumerate(kept) if position in chosen]
        for _, messages in kept:  # a question the weight left out stays free for a later source
            kept_questions.setdefault(normalise(messages[-2]["content"]), source.name)
        if source.no_think_ratio:
            chosen = seeded_choice(
                len(kept), source.no_think_ratio, source_seed(mixture.seed, source.name, "mode")
            )
            kept = [(row, without_reasoning(m) if i in chosen else m) for i, (row, m) in enumerate(kept)]

        val_indices = split_rows(
            len(kept), mixture.val_ratio, source_seed(mixture.seed, source.name, "split")
        )
        train = [{"messages": m} for i, (_, m) in enumerate(kept) if i not in val_indices]
        val = [{"messages": m} for i, (_, m) in enumerate(kept) if i in val_indices]
        weighted = repeat_rows(train, source.weight, source_seed(mixture.seed, source.name, "repeat"))

        by_reason = {reason: sum(r["reason"] == reason for r in rejects) for reason in MIXTURE_REASONS}
        if converted.rows_read != len(kept) + len(rejects):  # the no-loss invariant, checked
            raise AssertionError(f"{source.name}: {converted.rows_read} read != {len(kept)} + {len(rejects)}")
        result.sources.append(
            {
                "name": source.name,
                "id": source.id,
                "config": source.config,
                "split": source.split,
                "columns": {
                    "question": source_options.question_field,
                    "think": source_options.think_field,
                    "answer": source_options.answer_field,
                },
                "weight": source.weight,
                "thinking": source.thinking,
                "no_think_ratio": source.no_think_ratio,
                "inputs": inputs,
                "skipped_files": source_files.skipped,
                "rows": {"read": converted.rows_read, "kept": len(kept), "rejected": len(rejects)},
                "rejected_by_reason": {reason: n for reason, n in by_reason.items() if n},
                "kept": {
                    "train": len(train),
                    "val": len(val),
                    "non_thinking": sum(is_non_thinking(m) for _, m in kept),
                },
                "after_weighting": {"train": len(weighted), "val": len(val)},
            }
        )
        result.train += weighted
        result.val += val
        result.rejects += rejects
    if not result.train:
        raise DataError(f"{mixture.file}: no source kept a training row; nothing written.")
    return result


def repeat_rows(rows: list[dict[str, Any]], weight: float, seed: int) -> list[dict[str, Any]]:
    """Weight above 1: every row floor(weight) times, and a seeded share (the fraction) once more."""
    if weight <= 1:
        return list(rows)
    whole = math.floor(weight)
    extra = seeded_choice(len(rows), weight - whole, seed)
    return [row for position, row in enumerate(rows) for _ in range(whole + (position in extra))]


def refuse_unconverted(
    source: MixtureSource, options: DataOptions, read: int, converted: int, rejects: list[dict[str, Any]]
) -> None:
    """A source with no row, or none converted, is a mistake (its columns, most often), not a mix choice."""
    if not read:
        raise DataError(
            f"Source {source.name} holds no rows (its files are empty or blank): nothing written."
        )
    if converted:
        return
    reasons = sorted({entry["reason"] for entry in rejects})
    fields = "/".join(
        name for name in (options.question_field, options.think_field, options.answer_field) if name
    )
    raise DataError(
        f"Source {source.name}: 0 of {read} rows converted ({', '.join(reasons)}); nothing written. The "
        f"fields read were {fields}: name the source's own with `columns:` in the mixture file. First: "
        f"{' '.join(str(rejects[0]['detail']).split())[:200]}."
    )


def benchmark_index(mixture: Mixture) -> BenchmarkIndex | None:
    if not mixture.decontaminate:
        return None
    return load_benchmark_index([relative_to_file(mixture, spec) for spec in mixture.decontaminate])
