"""Where rows come from: a local file or folder, or a ModelScope dataset id (downloaded), resolved to the data
files to read, each with the train/val split it keeps from the source, and what is left out and why.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.readers import DataError, SourceRow, read_file_rows

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
TEST_SPLIT_SKIPPED = "a test split, held out for evaluation (pass the file itself to convert it)"


def split_of(path: Path) -> str | None:
    """'train' / 'val' / 'test' from a path such as train.jsonl, data/val-00000.parquet, test/part.json."""
    words = set(re.split(r"[-_./]", path.with_suffix("").as_posix().lower()))
    found = [split for split, names in SPLIT_WORDS.items() if words & names]
    return found[0] if len(found) == 1 else None


def display_name(path: Path) -> str:
    """A path as text that can be written to UTF-8 (undecodable bytes of a file name shown as \\xNN)."""
    return os.fsencode(path.as_posix()).decode("utf-8", errors="backslashreplace")


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
        followed = []
        for directory in sorted(directories):
            relative = display_name((here / directory).relative_to(folder))
            if directory.startswith("."):
                skipped.append({"file": relative, "reason": "hidden folder"})
            elif (here / directory).is_symlink():
                skipped.append(
                    {"file": relative, "reason": "a link to a folder, not followed (pass the target)"}
                )
            else:
                followed.append(directory)
        directories[:] = followed
        for name in sorted(names):
            path = here / name
            relative = display_name(path.relative_to(folder))
            if name.startswith("."):
                skipped.append({"file": relative, "reason": "hidden file"})
            elif not path.is_file():  # a FIFO would block the read forever; a socket or device holds no rows
                what = "a link that leads nowhere" if path.is_symlink() else "not a regular file"
                skipped.append({"file": relative, "reason": what})
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


HF_PREFIX = "hf:"  # `hf:<owner>/<name>`: a Hugging Face hub dataset instead of a ModelScope one


def download_dataset(dataset_id: str) -> Path:
    """Raw files of a ModelScope dataset, or of a hub dataset named `hf:<id>` (cached after the first
    download)."""
    try:
        if dataset_id.startswith(HF_PREFIX):
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(dataset_id[len(HF_PREFIX) :], repo_type="dataset"))
        from modelscope import dataset_snapshot_download

        return Path(dataset_snapshot_download(dataset_id))
    except Exception as error:  # network, auth or "not found": one clear message for all
        if dataset_id.startswith(HF_PREFIX):
            hub, name = "Hugging Face hub", dataset_id[len(HF_PREFIX) :]
            command = f"huggingface-cli download --repo-type dataset {name} --local-dir DIR"
        else:
            hub, command = "ModelScope", f"modelscope download --dataset {dataset_id} --local_dir DIR"
        raise DataError(
            f"{dataset_id!r} is not a local file or folder, and its download as a {hub} dataset failed "
            f"({type(error).__name__}: {error}). "
            f"Without network access, download it elsewhere (`{command}`) and pass the local file or folder: "
            "make data SRC=DIR (or --src DIR; in a mixture file, `path: DIR` beside its id)."
        ) from error


def local_source(source: str) -> Path | None:
    """The local file or folder `source` names; None for a ModelScope id; DataError for a missing path."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if path.is_symlink():
        raise DataError(f"Source {source!r} is a link that leads nowhere (its target is missing, or a loop).")
    if source.startswith(HF_PREFIX) and re.fullmatch(r"[\w.-]+/[\w.-]+", source[len(HF_PREFIX) :]):
        return None
    looks_local = source.startswith((".", "/", "~")) or path.suffix in DATA_SUFFIXES
    if looks_local or not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise DataError(f"Source {source!r} does not exist (expected a data file or folder).")
    return None


def resolve_source(source: str, path: Path | None = None) -> SourceFiles:
    """The files to read from a local file or folder, or from a ModelScope dataset id (downloaded)."""
    path = path or local_source(source) or download_dataset(source)
    if not path.is_file() and not path.is_dir():
        raise DataError(f"Source {source!r} is neither a regular file nor a folder (a pipe or a device?).")
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


def read_source_rows(files: SourceFiles) -> tuple[list[dict[str, Any]], list[SourceRow]]:
    """Every row of the chosen files, in order, and each file's record (name, sha256, bytes, kept split)."""
    inputs, rows = [], []
    for file, split in files.chosen:
        name = display_name(file.relative_to(files.root))
        file_rows, digest = read_file_rows(file, name, split)
        inputs.append({"file": name, "sha256": digest, "bytes": file.stat().st_size, "split": split})
        rows += file_rows
    return inputs, rows
