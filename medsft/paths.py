"""Where things live: files that ship with medsft, the folders commands write to, and the shared real inputs.

Shipped (read-only): the recipes, the sample data and the Qwen3 tokenizer files. A source checkout keeps
`recipes/` and `data/sample/` at the top of the repository; a wheel carries them inside the package
(pyproject.toml maps them to `medsft/recipes` and `medsft/sample`). The functions below find them either way.

Written: `output/` and `data/processed/` resolve against the current directory, or the folders named by
MEDSFT_OUTPUT_DIR / MEDSFT_DATA_DIR. The shared real inputs are in MEDSFT_SHARED, by default `../shared`.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_FILE_NAME = "medical_sample.jsonl"


def shipped_folder(installed_name: str, checkout_path: str) -> Path:
    """A folder installed inside the package (wheel), or its place in the source checkout (editable)."""
    installed = PACKAGE_DIR / installed_name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / checkout_path


def recipes_dir() -> Path:
    """The shipped recipes: one YAML file per recipe, and accelerate/ launch configurations."""
    return shipped_folder("recipes", "recipes")


def sample_data_file() -> Path:
    """The shipped sample of raw {question, think, answer} rows that the smoke recipe trains on."""
    return shipped_folder("sample", "data/sample") / SAMPLE_FILE_NAME


def bundled_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer (vocab, merges, chat template) shipped inside the package."""
    return PACKAGE_DIR / "qwen3_tokenizer"


def output_dir() -> Path:
    """Where runs and reports go: $MEDSFT_OUTPUT_DIR, else output/ in the current directory."""
    return Path(os.environ.get("MEDSFT_OUTPUT_DIR") or "output").expanduser().absolute()


def processed_dir() -> Path:
    """Where `medsft data` writes converted datasets: $MEDSFT_DATA_DIR, else data/processed/ here."""
    return Path(os.environ.get("MEDSFT_DATA_DIR") or "data/processed").expanduser().absolute()


def shared_dir() -> Path:
    """Folder of real third-party inputs (tokenizer, data rows, benchmark): $MEDSFT_SHARED, else ../shared."""
    return Path(os.environ.get("MEDSFT_SHARED") or "../shared").expanduser().resolve()


def follow_umask(path: Path) -> None:
    """Give a file or folder made by `tempfile` (mode 600 / 700) the mode `open` and `mkdir` would give it, so
    outputs follow the user's umask like other tools' outputs."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an output folder name (one folder inside an output folder), or None."""
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
