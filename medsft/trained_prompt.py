"""The system prompt a model was trained with, recorded in its folder so that what uses the model can ask
it the same way.

`medsft train` writes `final/medsft.json` next to the tokenizer and its chat template:
`{"system_prompt": "..."}`; "" means the model was trained without a system turn, null that its training rows
carried different system prompts (no single one to use).
"""

from __future__ import annotations

import json
from pathlib import Path

from medsft.errors import MedsftError

TRAINING_RECORD = "medsft.json"


class TrainingRecordError(MedsftError):
    """A model folder's medsft.json exists but cannot be read."""


def write_trained_system_prompt(model_dir: Path, system_prompt: str | None) -> None:
    record = {"system_prompt": system_prompt}
    (Path(model_dir) / TRAINING_RECORD).write_text(
        json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def trained_system_prompt(model_dir: str | Path) -> str | None:
    """The system prompt the model in the local folder `model_dir` was trained with ("" when trained without
    one), or None when the folder records none (a model not trained by medsft, or trained on rows with
    different prompts): use your own default then."""
    path = Path(model_dir) / TRAINING_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise TrainingRecordError(f"{path} cannot be read ({error}). Delete it or write it anew.") from error
    prompt = record.get("system_prompt") if isinstance(record, dict) else ...
    if prompt is not None and not isinstance(prompt, str):
        shown = json.dumps(record, ensure_ascii=False)
        raise TrainingRecordError(f'{path}: expected {{"system_prompt": text or null}}, got {shown}.')
    return prompt
