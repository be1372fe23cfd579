"""What a training run leaves to read: loss.png and run_card.json (the config, versions, data hashes, final
losses and the whole log history)."""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsft.provenance import git_state, package_versions

if TYPE_CHECKING:
    from medsft.recipe import Recipe


@dataclass
class RunData:
    """The rows a run trains and validates on, and where they came from (what its run card records)."""

    train_rows: list[dict]
    val_rows: list[dict]
    files: dict[str, Path]
    overlong: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # split -> [(row index, tokens)]
    system_prompt: str | None = None  # of every training row ("" none); None when they differ


def plot_losses(log_history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            axes.plot(
                *zip(*points, strict=True),
                marker="o" if key == "eval_loss" else None,
                markersize=3,
                label=label,
            )
    save_step_plot(figure, axes, path, "loss (assistant tokens)", title)


def save_step_plot(figure, axes, path: Path, ylabel: str, title: str) -> None:
    """Label a per-step plot (x: optimizer steps), save it as PNG and close it."""
    import matplotlib.pyplot as plt

    axes.set_xlabel("optimizer step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


RUN_CARD_PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "swanlab", "deepspeed")


def final_losses(history: list[dict[str, Any]]) -> dict[str, float | None]:
    """The last logged train and eval losses. A run shorter than logging_steps logs no step loss: its train
    loss is then the Trainer's mean over the session (`train_loss` of its closing entry)."""
    last = lambda key: next((entry[key] for entry in reversed(history) if key in entry), None)  # noqa: E731
    logged = [entry["loss"] for entry in history if "loss" in entry]
    return {
        "train_loss": last("loss") if logged else last("train_loss"),
        "eval_loss": last("eval_loss"),
        # over the whole run, also when resumed (the Trainer's own average restarts with each session)
        "mean_logged_train_loss": statistics.fmean(logged) if logged else None,
    }


def run_card(recipe: Recipe, data: RunData, trainer, resumed_from: Path | None, seconds: float) -> dict:
    history = trainer.state.log_history
    return {
        "config": recipe.resolved(),
        "versions": package_versions(RUN_CARD_PACKAGES),
        "git": git_state(),
        "data": {
            split: {
                "file": str(path),
                "sha256": sha256(path),
                "rows_used": len(getattr(data, f"{split}_rows")),
                "rejected_overlong": [{"row": i, "tokens": n} for i, n in data.overlong.get(split, [])],
            }
            for split, path in data.files.items()
        },
        "system_prompt": data.system_prompt,  # what every training row was asked with (final/medsft.json)
        "seed": recipe.sft.seed,
        "world_size": recipe.sft.world_size,
        "device": str(recipe.sft.device),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "wall_time_s": round(seconds, 1),
        "global_step": trainer.state.global_step,
        "final": final_losses(history),
        "log_history": history,
    }
