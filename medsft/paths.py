"""Where things live: the repository, the shared real inputs, and the default output folders."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "output"
PROCESSED_DIR = REPO_ROOT / "data" / "processed"
SAMPLE_DATA = REPO_ROOT / "data" / "sample" / "medical_sample.jsonl"

DEFAULT_SYSTEM_PROMPT = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"


def shared_dir() -> Path:
    """Folder of real third-party inputs (tokenizer, data rows, benchmark): $MEDSFT_SHARED or ../shared."""
    return Path(os.environ.get("MEDSFT_SHARED", REPO_ROOT.parent / "shared")).expanduser().resolve()


def real_tokenizer_dir() -> Path | None:
    """The real Qwen3-1.7B tokenizer from the shared folder, or None when it is not there."""
    path = shared_dir() / "models" / "Qwen3-1.7B-tokenizer"
    return path if (path / "tokenizer_config.json").is_file() else None
