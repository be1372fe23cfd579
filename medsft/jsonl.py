"""JSON Lines files: one reader and one (atomic) writer for every module."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medsft.errors import MedsftError
from medsft.paths import follow_umask


class JsonlError(MedsftError):
    """A JSONL file that cannot be read: names the file and the line."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line; a bad line is a JsonlError naming it."""
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except json.JSONDecodeError as error:
                raise JsonlError(
                    f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno})."
                ) from error
            except (UnicodeDecodeError, RecursionError) as error:
                raise JsonlError(f"{path}, line {number}: not valid JSON ({error}).") from error


def read_jsonl(path: str | Path) -> list[Any]:
    return [value for _, value in iter_jsonl(path)]


def dumps_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write rows to a temporary file beside `path`, then rename it over `path`: never half a file."""
    return write_text_atomic(path, "".join(dumps_line(row) for row in rows))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text_atomic(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, before the rename)
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
        follow_umask(Path(handle.name))
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path
