"""Training checkpoints (output_dir/checkpoint-N/): which are intact, and whether one holds a whole run.

An intact checkpoint is one the Trainer can resume from exactly: its trainer_state.json parses, it holds model
weights, optimizer and scheduler states, and each of those files loads. The load check is cheap: a safetensors
header, a memory-mapped torch.load, a JSON parse; no tensor is read into memory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
UNCHECKED_TORCH_FILES = {"training_args.bin"}  # a pickled TrainingArguments; a resume never reads it


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [path for path in output_dir.glob("checkpoint-*") if checkpoint_step(path) is not None]
    return sorted(found, key=checkpoint_step, reverse=True)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """trainer_state.json as a dict; ValueError when it is not the Trainer's state (truncated, or other)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise ValueError("no integer global_step")
    return state


def _file_damage(path: Path) -> str | None:
    """Why `path` cannot be loaded, or None. Only the formats a resume reads are opened."""
    try:
        if path.name == "trainer_state.json":
            read_trainer_state(path.parent)
        elif path.name.endswith(".index.json"):
            index = json.loads(path.read_text(encoding="utf-8"))
            missing = sorted(
                {shard for shard in index["weight_map"].values() if not (path.parent / shard).is_file()}
            )
            if missing:
                return f"lists shards that are missing: {', '.join(missing)}"
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, framework="pt"):  # parses the header, checks it covers the whole file
                pass
        elif path.suffix in {".pt", ".pth", ".bin"} and path.name not in UNCHECKED_TORCH_FILES:
            _load_torch_file(path)
    except Exception as error:  # any failure to load means the resume would fail on this file
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        return f"is truncated or unreadable ({reason})"
    return None


def _load_torch_file(path: Path) -> None:
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals

    try:
        with safe_globals():  # the globals the Trainer itself allows in its RNG states
            torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as error:
        # The archive opened and its tensors are in place; only the weights-only unpickler refused a global
        # (an optimizer that stores more than tensors and numbers). The Trainer decides how to load those.
        if "Weights only load failed" not in str(error):
            raise


def checkpoint_damage(checkpoint: Path, needs_optimizer: bool = True) -> str | None:
    """What keeps `checkpoint` from an exact resume ('optimizer.pt is truncated or unreadable (…)'), or None.

    `needs_optimizer` is false for runs that save the model only (`save_only_model`).
    DeepSpeed keeps weights and optimizer states in a global_step*/ folder, FSDP in *_fsdp* and optimizer*.
    """
    names = {path.name for path in checkpoint.iterdir()}
    deepspeed = any(name.startswith("global_step") for name in names)
    fsdp = any("pytorch_model_fsdp" in name for name in names)
    if "trainer_state.json" not in names:
        return "trainer_state.json is missing (the checkpoint was interrupted while saving)"
    if not (names & set(WEIGHT_FILES) or deepspeed or fsdp):
        return "model.safetensors is missing (the checkpoint holds no model weights)"
    if needs_optimizer and not deepspeed:
        if not any(name.startswith("optimizer") for name in names):
            return "optimizer.pt is missing"
        if "scheduler.pt" not in names:
            return "scheduler.pt is missing"
    for path in sorted(checkpoint.iterdir()):
        if path.is_file() and (problem := _file_damage(path)):
            return f"{path.name} {problem}"
    return None


def training_is_done(state: dict[str, Any], max_steps: int, num_train_epochs: float) -> bool:
    """Whether a checkpoint's trainer state reached the run's end (max_steps, or else num_train_epochs)."""
    if max_steps > 0:
        return state["global_step"] >= max_steps
    return float(state.get("epoch") or 0) >= num_train_epochs - 1e-6


def progress(state: dict[str, Any], max_steps: int, num_train_epochs: float) -> str:
    """'step 8 of 8', or 'epoch 3 of 3 (step 1200)'."""
    if max_steps > 0:
        return f"step {state['global_step']} of {max_steps}"
    return f"epoch {float(state.get('epoch') or 0):g} of {num_train_epochs:g} (step {state['global_step']})"
