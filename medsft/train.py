"""`medsft train`: supervised fine-tuning of Qwen3 with TRL's SFTTrainer, driven by a recipe.

    python -m medsft.train --recipe full_1epoch --learning_rate 2e-5
    accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 8 \
        -m medsft.train --recipe full_1epoch

Writes output/<recipe>/ (under the current directory, or $MEDSFT_OUTPUT_DIR): checkpoint-*/, final/ (model,
tokenizer with Qwen3's original chat template, generation config, medsft.json with the system prompt trained
with), loss.png, run_card.json, val_answers.jsonl
and swanlog/ (SwanLab, when reported to).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from medsft.atomic_folder import folder_lock
from medsft.chat_format import (
    leading_system_prompt,
    replace_system_turn,
    special_token_ids,
    without_answer,
)
from medsft.checkpoint import (
    checkpoint_to_resume,
    model_folder_damage,
    newest_checkpoint,
    progress,
    read_trainer_state,
    remove_stale_temporaries,
    train_from,
    trained_to_the_end,
)
from medsft.cli import run_command
from medsft.errors import CommandInterrupted, MedsftError
from medsft.jsonl import iter_jsonl, write_json, write_jsonl
from medsft.multinode import require_a_shared_output_dir
from medsft.paths import processed_dir, sample_data_file
from medsft.recipe import TINY_MODEL, Recipe, load_recipe
from medsft.run_card import RunData, plot_losses, run_card
from medsft.trained_prompt import write_trained_system_prompt

if TYPE_CHECKING:
    import torch

log = logging.getLogger("medsft.train")  # not __name__: it is "__main__" under `python -m medsft.train`


class PreflightError(MedsftError):
    """Something the run needs is missing or unusable; found before any model is loaded."""


# ---------------------------------------------------------------- checks before the model loads


def dataset_dir(dataset: str) -> Path:
    """A bare name is a folder under data/processed/ (or $MEDSFT_DATA_DIR); a path is taken as is."""
    path = Path(dataset).expanduser()
    if len(path.parts) == 1 and not dataset.startswith("."):
        return processed_dir() / path
    return path.absolute()


def unwritable(output_dir: Path, error: OSError) -> PreflightError:
    return PreflightError(
        f"Output folder {output_dir} is not writable ({error.strerror or error}). "
        "Choose another one with --output_dir DIR."
    )


def check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise unwritable(output_dir, error) from error


@contextlib.contextmanager
def one_writer(output_dir: Path, main_process: bool) -> Iterator[None]:
    """The output folder's lock for the run (taken by the main process; a second run is refused at once)."""
    with contextlib.ExitStack() as stack:
        if main_process:
            try:
                stack.enter_context(folder_lock(output_dir))
            except OSError as error:
                raise unwritable(output_dir, error) from error
        yield


def data_files(recipe: Recipe) -> dict[str, Path]:
    """train/val JSONL files of the recipe's dataset; raises when one that the run needs is missing."""
    if recipe.medsft.raw_source:
        return {}  # converted once the tokenizer is loaded (the over-long rule needs it)
    folder = dataset_dir(recipe.medsft.dataset)
    files = {"train": folder / "train.jsonl", "val": folder / "val.jsonl"}
    needed = (
        ["train", "val"] if recipe.sft.eval_strategy != "no" or recipe.medsft.val_questions else ["train"]
    )
    for split in needed:
        if not files[split].is_file():
            raise PreflightError(
                f"Data file {files[split]} is missing. Convert the data first (`medsft data`, or for the "
                f"smoke recipe `medsft data --src {sample_data_file()} --name sample`), or point the "
                "recipe's `dataset:` (or --dataset DIR) at a folder holding train.jsonl and val.jsonl."
            )
    return files


def preflight(recipe: Recipe, resume: bool) -> tuple[Path | None, dict[str, Path]]:
    sharded = [name for name in ("DEEPSPEED", "FSDP") if os.environ.get(f"ACCELERATE_USE_{name}") == "true"]
    if recipe.model.use_peft and sharded:
        raise PreflightError(
            f"LoRA runs on one GPU or with ACCEL=ddp, not {sharded[0]}: its adapter fits anywhere."
        )
    if "swanlab" in (recipe.sft.report_to or []) and recipe.sft.process_index == 0:
        swanlab_settings()
    output_dir = Path(recipe.sft.output_dir)
    if recipe.medsft.stage == "grpo":
        from medsft.grpo import check_generation_backend

        check_generation_backend(recipe)
    files = data_files(recipe)
    raw = recipe.medsft.raw_source
    if raw and not Path(raw).exists() and (raw.startswith((".", "/", "~")) or Path(raw).suffix):
        raise PreflightError(f"raw_source {raw} does not exist (a local file, or a ModelScope dataset id).")
    checkpoint = checkpoint_to_resume(recipe.sft, resume, overwrite=recipe.medsft.overwrite_output_dir)
    check_output_dir(output_dir)  # made once the inputs are known good: a refused run leaves no folder
    if recipe.sft.process_index == 0:
        for stale in remove_stale_temporaries(output_dir):
            log.info("removed %s, a temporary file left by an interrupted save", stale)
    if checkpoint is None and recipe.medsft.overwrite_output_dir and recipe.sft.process_index == 0:
        for old in output_dir.glob("checkpoint-*"):
            shutil.rmtree(old)
    finished = checkpoint is not None and trained_to_the_end(checkpoint, recipe.sft)
    if finished and sharded and not run_is_complete(recipe, checkpoint):
        raise PreflightError(
            f"{checkpoint} holds the whole run, but final/ or run_card.json is missing. Write them from it "
            "in one process (no model sharding): python -m medsft.train with the same recipe and --resume."
        )
    return checkpoint, files


def final_model_intact(output_dir: Path) -> bool:
    """final/ is there and loads; a damaged one is said and written again from the last checkpoint."""
    final = output_dir / "final"
    if not final.exists():
        return False
    damage = model_folder_damage(final)
    if damage:
        log.warning("%s: %s; it is written again from the last checkpoint", final, damage)
    return damage is None


def run_is_complete(recipe: Recipe, checkpoint: Path) -> bool:
    """`checkpoint` trained to the run's end, and final/ and run_card.json were written from that training.

    The run card's log history starts with the checkpoint's: a card left by an earlier run does not count.
    """
    output_dir = Path(recipe.sft.output_dir)
    state = read_trainer_state(checkpoint)
    if not trained_to_the_end(checkpoint, recipe.sft):
        return False
    try:
        card = json.loads((output_dir / "run_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    history = state.get("log_history", [])
    return (
        final_model_intact(output_dir)
        and isinstance(card, dict)
        and card.get("global_step") == state["global_step"]
        and card.get("log_history", [])[: len(history)] == history
    )


def report_complete(recipe: Recipe, checkpoint: Path) -> None:
    state = read_trainer_state(checkpoint)
    log.info(
        "%s is complete: trained to %s (%s), final/ and run_card.json written; nothing to do. To train "
        "longer, raise --max_steps (or --num_train_epochs) and --resume.",
        recipe.sft.output_dir,
        progress(state, recipe.sft.max_steps, recipe.sft.num_train_epochs),
        checkpoint.name,
    )


# ---------------------------------------------------------------- model, tokenizer, data


def load_tokenizer_and_model_dir(recipe: Recipe):
    """Resolve the sources first (a missing model fails here, before heavy work), then load the tokenizer.

    The random-weight stand-ins (tiny, random:<config.json>) have no tokenizer of their own: they use the
    Qwen3 tokenizer shipped with medsft.
    """
    from medsft.model import (
        RANDOM_MODEL_PREFIX,
        TRAIN_MODEL_SETTING,
        TRAIN_TOKENIZER_SETTING,
        load_bundled_tokenizer,
        load_tokenizer,
        resolve_model_dir,
    )

    source, cache_dir = recipe.model.model_name_or_path, recipe.medsft.model_cache_dir
    revision = None if recipe.model.model_revision == "main" else recipe.model.model_revision
    built_in_memory = source == TINY_MODEL or source.startswith(RANDOM_MODEL_PREFIX)
    model_dir = None
    if not built_in_memory:
        model_dir = resolve_model_dir(source, cache_dir, revision, setting=TRAIN_MODEL_SETTING)
    tokenizer_source = recipe.medsft.tokenizer or model_dir
    if tokenizer_source is None:
        return load_bundled_tokenizer(), model_dir
    return load_tokenizer(tokenizer_source, cache_dir, setting=TRAIN_TOKENIZER_SETTING), model_dir


def read_rows(path: Path, system_prompt: str | None = None) -> list[dict]:
    """The rows of a `medsft data` split, each with `system_prompt` as its system turn when given. A row
    without a `messages` list of turns is an error naming its line, as is one the prompt cannot apply to."""
    rows = []
    for line, row in iter_jsonl(path):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not all(
            isinstance(message, dict) and isinstance(message.get("role"), str) for message in messages
        ):
            raise PreflightError(
                f"{path}, line {line}: not a chat row (an object with a `messages` list). Convert raw "
                "{question, think, answer} rows with `medsft data` first."
            )
        if system_prompt is not None:
            try:
                row = {**row, "messages": replace_system_turn(messages, system_prompt)}
            except ValueError as error:
                raise PreflightError(
                    f"{path}, line {line}: the recipe's system_prompt cannot take effect: {error}. Leave "
                    "system_prompt unset to train on the rows' own system turns."
                ) from None
        rows.append(row)
    return rows


def shared_system_prompt(rows: list[dict]) -> str | None:
    """The system prompt all rows share ("" for none), or None when they differ (logged)."""
    prompts = {leading_system_prompt(row["messages"]) for row in rows}
    if len(prompts) > 1:
        log.warning(
            "the training rows carry %d different system prompts: final/ records none (set system_prompt "
            "in the recipe to train with one)",
            len(prompts),
        )
    return prompts.pop() if len(prompts) == 1 else None


def load_prompt_data(recipe: Recipe, files: dict[str, Path]) -> RunData:
    """Stage grpo: the prompt + gold rows of `medsft data --kind mcq` (medsft.grpo)."""
    from medsft.grpo import read_prompt_rows, trained_system_prompt

    if recipe.medsft.raw_source:
        raise PreflightError(
            "raw_source holds SFT rows; a grpo recipe reads `dataset:` (from `medsft data --kind mcq`)."
        )
    rows = {split: read_prompt_rows(path) if path.is_file() else [] for split, path in files.items()}
    data = RunData(rows.get("train", []), rows.get("val", []), files)
    if not data.train_rows:
        raise PreflightError(f"No training rows in {files.get('train')}.")
    if recipe.sft.eval_strategy != "no" and not data.val_rows:
        raise PreflightError(f"{files.get('val')} has no rows to evaluate on; pass --eval_strategy no.")
    data.system_prompt = trained_system_prompt(data.train_rows)
    return data


def load_data(recipe: Recipe, tokenizer, files: dict[str, Path]) -> RunData:
    from medsft.conversion import DataOptions, find_overlong
    from medsft.data import prepare

    if recipe.medsft.stage == "grpo":
        return load_prompt_data(recipe, files)
    output_dir = Path(recipe.sft.output_dir)
    if recipe.medsft.raw_source:  # the same conversion as `medsft data`, into the run's folder
        folder = output_dir / "data"
        options = DataOptions(max_length=recipe.sft.max_length or 0)
        if recipe.medsft.system_prompt is not None:
            options = replace(options, system_prompt=recipe.medsft.system_prompt)
        with recipe.sft.main_process_first(desc="converting raw_source"):
            if recipe.sft.process_index == 0:
                prepare(recipe.medsft.raw_source, folder, options, tokenizer=tokenizer)
        files = {"train": folder / "train.jsonl", "val": folder / "val.jsonl"}
    prompt = recipe.medsft.system_prompt
    rows = {split: read_rows(path, prompt) if path.is_file() else [] for split, path in files.items()}
    data = RunData(rows.get("train", []), rows.get("val", []), files)
    if not data.train_rows:
        raise PreflightError(f"No training rows in {files.get('train')}.")
    if recipe.sft.max_length:  # over-long rows are rejected, never truncated (that would cut off the answer)
        for split in ("train", "val"):
            kept = getattr(data, f"{split}_rows")
            overlong = find_overlong(tokenizer, (row["messages"] for row in kept), recipe.sft.max_length)
            dropped = {index for index, _ in overlong}
            setattr(data, f"{split}_rows", [row for i, row in enumerate(kept) if i not in dropped])
            data.overlong[split] = overlong
            if overlong:
                log.info(
                    "%d %s rows longer than max_length %d rejected (row, tokens): %s",
                    len(overlong),
                    split,
                    recipe.sft.max_length,
                    overlong[:10],
                )
        if not data.train_rows:
            raise PreflightError(
                f"Every row of {files.get('train')} is longer than max_length {recipe.sft.max_length} "
                "tokens; raise --max_length or convert shorter rows."
            )
    if recipe.sft.eval_strategy != "no" and not data.val_rows:
        raise PreflightError(
            f"{files.get('val')} has no rows to evaluate on (after the max_length rule); "
            "add validation rows or pass --eval_strategy no."
        )
    data.system_prompt = shared_system_prompt(data.train_rows)
    return data


def load_model(recipe: Recipe, model_dir: Path | None, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from medsft.model import build_random_model, build_tiny_qwen3, random_model_config

    random_config = random_model_config(recipe.model.model_name_or_path)
    if recipe.model.model_name_or_path == TINY_MODEL or random_config:
        if random_config:  # `random:<config.json>`: that exact architecture, built in the recipe's dtype
            dtype = None if recipe.model.dtype in (None, "auto") else getattr(torch, recipe.model.dtype)
            model = build_random_model(
                random_config, dtype, recipe.sft.seed, recipe.model.attn_implementation
            )
        else:
            model = build_tiny_qwen3(
                tokenizer,
                hidden_size=recipe.medsft.tiny_hidden_size,
                num_layers=recipe.medsft.tiny_num_layers,
                seed=recipe.sft.seed,
            )
        ids = special_token_ids(tokenizer)
        # Qwen3's own generation defaults (thinking mode), as its generation_config.json ships them
        model.generation_config.update(
            eos_token_id=[ids["end_of_turn"], ids["pad"]],
            pad_token_id=ids["pad"],
            do_sample=True,
            temperature=0.6,
            top_p=0.95,
            top_k=20,
        )
        if recipe.model.dtype not in (None, "auto"):  # as a real checkpoint loads in the recipe's dtype
            model.to(getattr(torch, recipe.model.dtype))
        return model
    return AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        use_safetensors=True,
        trust_remote_code=False,
    )


# ---------------------------------------------------------------- training


def build_trainer(recipe: Recipe, model, tokenizer, data: RunData, callbacks: list | None = None):
    """The one place the trainer is constructed."""
    from datasets import Dataset
    from trl import get_peft_config

    from medsft.thinking_modes import split_examples
    from medsft.trainer import FastSFTTrainer

    if recipe.medsft.stage == "grpo":
        from medsft.grpo import build_grpo_trainer

        return build_grpo_trainer(recipe, model, tokenizer, data, callbacks)

    train, val = split_examples([data.train_rows, data.val_rows], recipe.medsft.empty_think_loss)
    trainer_class = FastSFTTrainer  # SFTTrainer with the loss only at trained positions (docs/benchmarks.md)
    return trainer_class(
        model=model,
        args=recipe.sft,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(val) if recipe.sft.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(recipe.model),
        callbacks=callbacks,
    )


def swanlab_settings() -> Any:
    """swanlab's own settings (SWANLAB_MODE, its settings files); values it refuses stop the run at once."""
    import swanlab
    from pydantic import ValidationError

    try:
        return swanlab.Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PreflightError(
            f"SwanLab's settings are invalid ({problems}). Set SWANLAB_MODE to offline, local, disabled or "
            "online, or unset it."
        ) from None


def tracking_mode(settings: Any) -> str:
    """The SwanLab mode to run in, never one that asks for a login: SWANLAB_MODE (or swanlab's settings files)
    when it names local, offline or disabled; the cloud when an API key is configured (SWANLAB_API_KEY,
    `swanlab login`'s .netrc, a swanlab.yaml or .env); else offline."""
    if settings.mode != "online":
        return settings.mode
    return "online" if settings.api_key else "offline"


def start_tracking(recipe: Recipe) -> Any:
    """SwanLab run named by the recipe, logged under the output folder (or SWANLAB_LOG_DIR). It never prompts:
    without a configured key it logs offline and says so in one line."""
    if "swanlab" not in (recipe.sft.report_to or []) or recipe.sft.process_index != 0:
        return None
    import swanlab

    logdir = os.environ.get("SWANLAB_LOG_DIR") or str(Path(recipe.sft.output_dir) / "swanlog")
    settings = dict(
        project=recipe.medsft.swanlab_project,
        workspace=recipe.medsft.swanlab_workspace,
        experiment_name=recipe.sft.run_name,
        config=recipe.resolved(),
        logdir=logdir,
        settings=swanlab.Settings(interactive=False),
    )
    mode = tracking_mode(swanlab_settings())
    upload = f"upload it with `swanlab sync {logdir}/run-*` once logged in (`swanlab login`)"
    if mode == "offline":
        log.info("SwanLab: no API key configured, logging offline to %s; %s", logdir, upload)
    try:
        swanlab.init(mode=mode, **settings)
    except RuntimeError as error:  # the cloud refused the key or could not be reached
        log.warning("SwanLab cloud unavailable (%s): logging offline to %s; %s", error, logdir, upload)
        swanlab.init(mode="offline", **settings)
    return swanlab


class RankReport(TrainerCallback):
    """The main process logs the optimizer steps each rank took in this session: proof that all trained."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_train_end(self, args, state, control, **kwargs):
        import torch.distributed as dist

        steps = [self.steps]
        if dist.is_available() and dist.is_initialized():
            steps = [None] * dist.get_world_size()
            dist.all_gather_object(steps, self.steps)
        log.info(
            "optimizer steps per rank: %s (global step %d)",
            ", ".join(f"rank {rank}: {count}" for rank, count in enumerate(steps)),
            state.global_step,
        )


def save_in_dtype(model, state_dict: dict, final_dir: Path, dtype: torch.dtype) -> None:
    """Save `state_dict` as `model`'s weights in `dtype`, with `dtype` recorded in its config."""
    cast = {name: t.to(dtype) if t.is_floating_point() else t for name, t in state_dict.items()}
    model.save_pretrained(final_dir, state_dict=cast)
    model.config.dtype = dtype  # save_pretrained records the live parameters' dtype
    model.config.save_pretrained(final_dir)


def save_fsdp_final(trainer, final_dir: Path, dtype: torch.dtype) -> None:
    """FSDP: gather the full state dict (every rank takes part), save it in `dtype` from the main process.

    Under bf16, accelerate keeps fp32 master copies of the trainable parameters (FSDP2 needs one dtype per
    group), so the gathered weights are fp32: saved as they are, final/ would be twice the model's size.
    """
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.accelerator.is_main_process:
        save_in_dtype(trainer.accelerator.unwrap_model(trainer.model), state_dict, final_dir, dtype)


def save_final(trainer, recipe: Recipe, tokenizer, dtype: torch.dtype, system_prompt: str | None) -> Path:
    """final/: full model in safetensors (LoRA merged in) in `dtype` (the loaded model's), tokenizer with
    Qwen3's original chat template, and medsft.json with the system prompt trained with."""
    from peft import PeftModel

    from medsft.model import original_qwen3_chat_template

    final_dir = Path(recipe.sft.output_dir) / "final"
    if isinstance(trainer.model, PeftModel):
        if recipe.sft.process_index == 0:
            trainer.model.save_pretrained(Path(recipe.sft.output_dir) / "adapter")
            trainer.model.merge_and_unload().save_pretrained(final_dir, safe_serialization=True)
    elif trainer.is_fsdp_enabled:
        save_fsdp_final(trainer, final_dir, dtype)
    else:
        trainer.save_model(str(final_dir))
    if recipe.sft.process_index == 0:
        tokenizer.chat_template = original_qwen3_chat_template()  # not TRL's training variant
        tokenizer.save_pretrained(final_dir)
        write_trained_system_prompt(final_dir, system_prompt)
        (final_dir / "training_args.bin").unlink(missing_ok=True)  # lives in the checkpoints and the run card
    return final_dir


# ---------------------------------------------------------------- reports


def answer_val_questions(recipe: Recipe, final_dir: Path, rows: list[dict], tracker: Any) -> list[dict]:
    """Reload final/ (proves it loads), answer a few validation questions greedily, log them as text."""
    if not recipe.medsft.val_questions or not rows:
        return []
    from medsft.engine import GenerationSettings, load_engine

    generator = load_engine(final_dir, device="cpu" if recipe.sft.use_cpu else None)
    # SFT rows hold the whole conversation; GRPO rows their prompt
    prompts = [
        row.get("prompt") or without_answer(row["messages"]) for row in rows[: recipe.medsft.val_questions]
    ]
    try:
        outputs = generator.generate(
            prompts, GenerationSettings.greedy(max_new_tokens=recipe.medsft.val_max_new_tokens)
        )
    finally:
        generator.close()  # its memory back, and no decoding thread left at exit
    answers = [
        {
            "question": prompt[-1]["content"],
            "reasoning": out.reasoning,
            "answer": out.answer,
            "output": out.text,
        }
        for prompt, out in zip(prompts, outputs, strict=True)
    ]
    if tracker is not None:
        texts = [tracker.Text(f"问题：{a['question']}\n\n模型输出：{a['output']}") for a in answers]
        tracker.log({"val_answers": texts})
    return answers


def release_training_state(trainer) -> None:
    """On every rank, once final/ is written: drop the optimizer, the distributed wrapper of the model (DDP,
    FSDP, DeepSpeed's engine) and DeepSpeed's process-wide config, before final/ is reloaded.

    Under ZeRO-3, `from_pretrained` reads that global config and loads through DeepSpeed's sharded context,
    which broadcasts from rank 0: the main process reloading final/ alone would wait forever for ranks that
    sit at the closing barrier. With the config unset the reload is an ordinary one.
    """
    import gc

    import torch
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    trainer.accelerator.free_memory()  # destroys DeepSpeed's engine; forgets prepared models and optimizers
    trainer.optimizer = trainer.lr_scheduler = None
    trainer.model_wrapped = trainer.deepspeed = None
    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- entry points


def run(recipe: Recipe, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train a recipe end to end; returns the output folder. One run writes an output folder at a time (a
    second is refused at once), and a run that fails before writing anything leaves no empty folder."""
    output_dir = Path(recipe.sft.output_dir)
    existed = output_dir.exists()
    with one_writer(output_dir, recipe.sft.process_index == 0):
        try:
            return train_recipe(recipe, resume, callbacks)
        except BaseException:
            if not existed and output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()
            raise


def train_recipe(recipe: Recipe, resume: bool, callbacks: list | None) -> Path:
    started = time.time()
    checkpoint, files = preflight(recipe, resume)
    require_a_shared_output_dir(recipe.sft)  # multi-node: docs/training.md
    if checkpoint is not None and run_is_complete(recipe, checkpoint):
        report_complete(recipe, checkpoint)
        return Path(recipe.sft.output_dir)
    tokenizer, model_dir = load_tokenizer_and_model_dir(recipe)
    data = load_data(recipe, tokenizer, files)
    model = load_model(recipe, model_dir, tokenizer)
    saved_dtype = model.dtype  # the recipe's; FSDP upcasts trainable weights to fp32 while training
    tracker = start_tracking(recipe)
    trainer = build_trainer(recipe, model, tokenizer, data, [RankReport(), *(callbacks or [])])
    stage = "training"
    try:
        train_from(trainer, checkpoint)
        stage = "writing final/"
        final_dir = save_final(trainer, recipe, tokenizer, saved_dtype, data.system_prompt)
        release_training_state(trainer)
        stage = "writing the reports"
        write_reports(recipe, data, trainer, checkpoint, tracker, final_dir, started)
    except KeyboardInterrupt:
        raise interruption(recipe, trainer, stage) from None
    trainer.accelerator.wait_for_everyone()  # the other ranks wait while rank 0 writes the reports
    trainer.end()
    return Path(recipe.sft.output_dir)


def interruption(recipe: Recipe, trainer, stage: str) -> CommandInterrupted:
    """Ctrl-C: where the run stopped, what of it is on disk, and how to go on. (SwanLab's own Ctrl-C
    handler has marked its run aborted already.)"""
    output_dir = Path(recipe.sft.output_dir)
    state = {"global_step": trainer.state.global_step, "epoch": trainer.state.epoch}
    at = f"{stage} at {progress(state, recipe.sft.max_steps, recipe.sft.num_train_epochs)}"
    if stage == "training":
        left = "final/ and run_card.json not written"
    else:
        left = "final/ and run_card.json are not complete"
    newest = newest_checkpoint(output_dir)
    if newest is None:
        return CommandInterrupted(
            f"interrupted while {at}, before the first checkpoint ({left}): run it again."
        )
    return CommandInterrupted(f"interrupted while {at} ({left}); --resume continues from {newest}.")


def write_reports(recipe, data, trainer, checkpoint, tracker, final_dir: Path, started: float) -> None:
    """The main process: loss curve, validation answers from the reloaded final/, the run card."""
    output_dir = Path(recipe.sft.output_dir)
    if recipe.sft.process_index == 0:
        plot_losses(trainer.state.log_history, output_dir / "loss.png", recipe.sft.run_name)
        if recipe.medsft.stage == "grpo":
            from medsft.grpo import plot_rewards

            plot_rewards(trainer.state.log_history, output_dir / "rewards.png", recipe.sft.run_name)
        answers = answer_val_questions(recipe, final_dir, data.val_rows, tracker)
        write_jsonl(output_dir / "val_answers.jsonl", answers)
        card = run_card(recipe, data, trainer, checkpoint, time.time() - started)
        write_json(output_dir / "run_card.json", card)
        if tracker is not None:
            tracker.finish()
        log.info("wrote %s, %s, %s", final_dir, output_dir / "loss.png", output_dir / "run_card.json")
        final = card["final"]
        log.info("final train loss %s, eval loss %s", final["train_loss"], final["eval_loss"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="medsft train",
        description="Fine-tune Qwen3 with a recipe. Any recipe key (a TRL SFTConfig or ModelConfig field, "
        "or a medsft key) can be overridden: --learning_rate 2e-5 --output_dir DIR --max_steps 10 ...",
        epilog="Recipes, outputs, memory, resume, multi-GPU and SwanLab: docs/training.md",
    )
    parser.add_argument(
        "--recipe", default="smoke", help="name in recipes/ (smoke, full_1epoch, lora) or a YAML path"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in output_dir (a finished run is left as it is); "
        "--resume_from_checkpoint PATH continues from a given checkpoint",
    )
    args, overrides = parser.parse_known_args(argv)  # the rest are recipe keys, parsed by load_recipe
    run(load_recipe(args.recipe, overrides, check_sources=True), resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("train", main, sys.argv[1:]))
