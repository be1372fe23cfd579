"""Resume, in one place: which checkpoint (output_dir/checkpoint-N/) a run continues from, whether it is
intact, and loading it into the Trainer.

An intact checkpoint is one the Trainer can resume from exactly: its trainer_state.json parses, it holds model
weights, optimizer and scheduler states, and each of those files loads. The load check is cheap: a safetensors
header, a memory-mapped torch.load, a JSON parse; no tensor is read into memory.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.errors import MedsftError

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

log = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
UNCHECKED_TORCH_FILES = {"training_args.bin"}  # a pickled TrainingArguments; a resume never reads it


class CheckpointError(MedsftError):
    """No checkpoint to continue from, or the one asked for cannot be resumed from."""


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [path for path in output_dir.glob("checkpoint-*") if checkpoint_step(path) is not None]
    return sorted(found, key=checkpoint_step, reverse=True)


def newest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a crash mid-save leaves none."""
    found = checkpoints_newest_first(output_dir)
    return next((path for path in found if (path / "trainer_state.json").is_file()), None)


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


def model_folder_damage(folder: Path) -> str | None:
    """What keeps a saved model folder (final/) from loading ('model.safetensors is truncated …'), or None."""
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        return "model.safetensors is missing"
    for path in dict.fromkeys([*weights, *sorted(folder.glob("*.safetensors"))]):
        if problem := _file_damage(path):
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


def trained_to_the_end(checkpoint: Path, args: TrainingArguments) -> bool:
    """Whether `checkpoint` holds the whole run that `args` describe."""
    return training_is_done(read_trainer_state(checkpoint), args.max_steps, args.num_train_epochs)


def remove_stale_temporaries(output_dir: Path) -> list[Path]:
    """Delete the `.tmp*` files that a save killed midway leaves in checkpoint-N/, final/ or adapter/
    (safetensors writes each file to a temporary one, then renames it); returns what was removed. Only the
    run that holds the output folder's lock may call it: no other save is under way then."""
    folders = [*checkpoints_newest_first(output_dir), output_dir / "final", output_dir / "adapter"]
    removed = [path for folder in folders for path in sorted(folder.glob(".tmp*")) if path.is_file()]
    for path in removed:
        path.unlink()
    return removed


# ---------------------------------------------------------------- choosing the checkpoint


def newest_intact_checkpoint(output_dir: Path, needs_optimizer: bool, announce: bool = True) -> Path:
    """The newest intact checkpoint in output_dir; newer damaged ones are named in the log and skipped."""
    damaged = []
    for checkpoint in checkpoints_newest_first(output_dir):
        problem = checkpoint_damage(checkpoint, needs_optimizer)
        if problem is None:
            if damaged and announce:
                for skipped in damaged:
                    log.warning("%s; skipped", skipped)
                log.warning("resuming from %s, the newest intact checkpoint", checkpoint.name)
            return checkpoint
        damaged.append(f"{checkpoint.name}: {problem}")
    if not damaged:
        raise CheckpointError(f"--resume: no complete checkpoint in {output_dir}. Start without --resume.")
    raise CheckpointError(
        f"--resume: no intact checkpoint in {output_dir} ({'; '.join(damaged)}). Start afresh without "
        "--resume (--overwrite_output_dir true deletes these checkpoints) or in another --output_dir."
    )


def requested_checkpoint(path: Path, needs_optimizer: bool) -> Path:
    """The checkpoint named by resume_from_checkpoint, validated like the ones --resume picks."""
    where = f"resume_from_checkpoint {path}"
    if not path.is_dir():
        raise CheckpointError(
            f"{where} does not exist. Point it at a checkpoint-N folder of an earlier run, or use --resume "
            "to continue from the newest intact checkpoint in output_dir."
        )
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(
            f"{where} is not a training checkpoint (no trainer_state.json). Point it at a checkpoint-N "
            "folder (final/ holds the model only), or use --resume."
        )
    problem = checkpoint_damage(path, needs_optimizer)
    if problem:
        raise CheckpointError(f"{where}: {problem}. Point it at an intact checkpoint, or use --resume.")
    return path


def checkpoint_to_resume(args: TrainingArguments, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint a run continues from: `args.resume_from_checkpoint`, else with `resume` the newest
    intact one in `args.output_dir`, else none. Checkpoints left in output_dir without `resume` are an error
    unless `overwrite` (the caller deletes them)."""
    output_dir, needs_optimizer = Path(args.output_dir), not args.save_only_model
    if args.resume_from_checkpoint:
        return requested_checkpoint(Path(args.resume_from_checkpoint).expanduser(), needs_optimizer)
    if resume:
        return newest_intact_checkpoint(output_dir, needs_optimizer, announce=args.process_index == 0)
    checkpoint = newest_checkpoint(output_dir)
    if checkpoint is not None and not overwrite:
        raise CheckpointError(
            f"{output_dir} already holds checkpoints (newest: {checkpoint.name}). Continue it with --resume "
            "(make train RESUME=1), or start afresh in another folder (--output_dir DIR) or with "
            "--overwrite_output_dir true (deletes those checkpoints)."
        )
    return None


# ---------------------------------------------------------------- loading it


def train_from(trainer: Trainer, checkpoint: Path | None) -> None:
    """Train, continuing from `checkpoint` when given (the Trainer's own resume: weights, optimizer,
    scheduler, RNG states, data position). A checkpoint that holds the whole run is loaded, not trained on."""
    if checkpoint is None or not trained_to_the_end(checkpoint, trainer.args):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        return
    restore_finished_run(trainer, checkpoint)


def restore_finished_run(trainer: Trainer, checkpoint: Path) -> None:
    """Put the weights and state of a checkpoint that holds the whole run into `trainer`, with no step.

    The Trainer has no public call for this: `train(resume_from_checkpoint=...)` takes one optimizer step
    before it checks max_steps, so it would train past the end. The weights are loaded the way the Trainer
    loads them, through public library calls (PEFT's `load_adapter`, safetensors, transformers' sharded
    loader), and the state with `TrainerState.load_from_json`.
    """
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    weights = checkpoint
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        weights = Path(state.best_model_checkpoint)  # what the Trainer loads at the end of training
    log.info(
        "%s holds the whole run: final/ and the reports are written from %s, with no training step",
        checkpoint.name,
        weights.name,
    )
    load_weights(trainer.model, weights)
    trainer.state = state


def load_weights(model, folder: Path) -> None:
    """Load a checkpoint's weights into `model` in place: a LoRA adapter into the active adapter, else the
    full weights (one safetensors or torch file, or an index of shards)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers.trainer_utils import load_sharded_checkpoint

    if isinstance(model, PeftModel):
        model.load_adapter(str(folder), model.active_adapter, is_trainable=True)
        return
    # not strict: a tied weight is saved once; what is missing besides those is an error below
    if (folder / "model.safetensors").is_file():
        incompatible = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    elif (folder / "pytorch_model.bin").is_file():
        state_dict = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        incompatible = model.load_state_dict(state_dict, strict=False)
    else:
        incompatible = load_sharded_checkpoint(model, str(folder), strict=False)  # an index of shards
    tied = getattr(model, "all_tied_weights_keys", None) or {}  # {tied copy: the weight it shares}
    missing = [key for key in incompatible.missing_keys if key not in tied]
    if missing or incompatible.unexpected_keys:
        raise CheckpointError(
            f"{folder} does not match the model: missing {missing[:3]}, unexpected "
            f"{incompatible.unexpected_keys[:3]}. Resume with the recipe that wrote it."
        )
