"""The GRPO stage of `medsft train` (`stage: grpo` recipes): its prompt + gold rows, TRL's GRPOTrainer with
the rewards of medsft.rewards, and the reward curves. Everything else (recipe, checkpoints, --resume, SwanLab,
final/, the run card) is the SFT run's own path in medsft.train.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.chat_format import leading_system_prompt
from medsft.errors import MedsftError
from medsft.jsonl import iter_jsonl
from medsft.run_card import save_step_plot

if TYPE_CHECKING:
    from medsft.recipe import Recipe

PROMPT_COLUMNS = ("prompt", "gold", "options")  # what the rows of `medsft data --kind mcq` must carry


class GrpoError(MedsftError):
    """A GRPO run that cannot start: rows that are not prompt + gold rows, a generation backend missing."""


# TRL's vLLM range (trl.import_utils); medsft's .venv-vllm (vLLM 0.33 for eval and serve) is outside it
TRL_VLLM_RANGE = "0.22 to 0.31"


def check_generation_backend(recipe: Recipe) -> None:
    """`use_vllm: true` needs vLLM importable in the training environment itself, before any model loads."""
    from trl.import_utils import is_vllm_available

    if recipe.sft.use_vllm and not is_vllm_available():
        raise GrpoError(
            f"use_vllm is true, but vLLM ({TRL_VLLM_RANGE}, the versions TRL supports) is not installed in "
            "this training environment (medsft's .venv-vllm is for eval and serve). Install it beside "
            "training (docs/training.md, GRPO), or pass --use_vllm false to generate with transformers "
            "(slower)."
        )


def read_prompt_rows(path: Path) -> list[dict]:
    """The rows of a `medsft data --kind mcq` split; a row without a prompt, gold and options is an error
    naming its line."""
    rows = []
    for line, row in iter_jsonl(path):
        if not isinstance(row, dict) or any(column not in row for column in PROMPT_COLUMNS):
            raise GrpoError(
                f"{path}, line {line}: not a prompt + gold row (the fields {', '.join(PROMPT_COLUMNS)}). "
                "Convert multiple-choice files with `medsft data --kind mcq --src FILE` first."
            )
        rows.append(row)
    return rows


def trained_system_prompt(rows: list[dict]) -> str | None:
    """The system prompt every prompt shares ("" for none), or None when they differ."""
    prompts = {leading_system_prompt(row["prompt"]) for row in rows}
    return prompts.pop() if len(prompts) == 1 else None


def build_grpo_trainer(recipe: Recipe, model, tokenizer, data, callbacks: list | None = None):
    """TRL's GRPOTrainer over the prompt + gold rows, with the recipe's reward functions."""
    from datasets import Dataset
    from trl import GRPOTrainer, get_peft_config

    from medsft.rewards import reward_functions

    def dataset(rows: list[dict]) -> Dataset:
        return Dataset.from_list([{column: row[column] for column in PROMPT_COLUMNS} for row in rows])

    rewards = reward_functions(
        recipe.medsft.reward_funcs, recipe.sft.max_completion_length, recipe.medsft.length_guard_buffer
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=recipe.sft,
        train_dataset=dataset(data.train_rows),
        eval_dataset=dataset(data.val_rows) if recipe.sft.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(recipe.model),
        callbacks=callbacks,
    )


def reward_names(log_history: list[dict[str, Any]]) -> list[str]:
    """The reward functions logged (TRL's `rewards/<name>/mean`), in the order first seen."""
    names: dict[str, None] = {}
    for entry in log_history:
        for key in entry:
            if key.startswith("rewards/") and key.endswith("/mean"):
                names[key.removeprefix("rewards/").removesuffix("/mean")] = None
    return list(names)


def plot_rewards(log_history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Each reward function's mean (with its std as a band) and the total reward, per logged step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    series = [(f"rewards/{name}/mean", f"rewards/{name}/std", name) for name in reward_names(log_history)]
    for mean_key, std_key, label in [*series, ("reward", "reward_std", "total (weighted)")]:
        points = [(e["step"], e[mean_key], e.get(std_key, 0.0)) for e in log_history if mean_key in e]
        if not points:
            continue
        steps, means, stds = zip(*points, strict=True)
        axes.plot(steps, means, marker="o", markersize=3, label=label)
        axes.fill_between(
            steps,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            alpha=0.15,
        )
    save_step_plot(figure, axes, path, "reward (mean ± std over the completions)", title)
