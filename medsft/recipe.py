"""Recipes: flat YAML files of TRL `SFTConfig` fields plus a few medsft keys, every key validated.

A recipe is `recipes/<name>.yaml` (or any YAML path). Command-line overrides use the same names
(`--learning_rate 2e-5`) and are validated the same way. TRL's own CLI forwards unknown keys silently;
here a misspelt key is an error that names it and suggests the closest valid one.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser
from trl import SFTConfig

from medsft.paths import DEFAULT_SYSTEM_PROMPT, OUTPUT_DIR, REPO_ROOT

RECIPES_DIR = REPO_ROOT / "recipes"
TINY_MODEL = "tiny"  # `model: tiny` builds a random-weight Qwen3 in memory (smoke runs, tests)


class RecipeError(ValueError):
    """A recipe or an override is invalid: unknown key, wrong type, missing file."""


@dataclass
class MedsftArgs:
    """The medsft keys of a recipe; everything else is a TRL `SFTConfig` field."""

    model: str = field(
        default="Qwen/Qwen3-1.7B",
        metadata={"help": "ModelScope id, local folder, `hf:<id>` for the Hugging Face hub, or `tiny`."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer source when it differs from the model (default: the model's own)."},
    )
    model_cache_dir: str | None = field(
        default=None, metadata={"help": "Download cache for ModelScope / the hub."}
    )
    dtype: str = field(
        default="bfloat16", metadata={"help": "Weights dtype when loading: bfloat16, float32, auto."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa (default), eager or flash_attention_2."}
    )
    tiny_hidden_size: int = field(default=64, metadata={"help": "Hidden size of `model: tiny`."})
    tiny_num_layers: int = field(default=2, metadata={"help": "Number of layers of `model: tiny`."})
    dataset: str = field(
        default="data/processed/delicate_medical_r1_data",
        metadata={"help": "Folder with train.jsonl and val.jsonl written by `medsft data`."},
    )
    raw_source: str | None = field(
        default=None,
        metadata={"help": "A raw {question, think, answer} file converted on the fly instead of `dataset`."},
    )
    system_prompt: str = field(
        default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System prompt of converted rows."}
    )
    use_peft: bool = field(
        default=False, metadata={"help": "Train a LoRA adapter instead of all parameters."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: every linear layer of the blocks)."}
    )
    swanlab_project: str = field(default="medsft", metadata={"help": "SwanLab project name."})
    swanlab_workspace: str | None = field(
        default=None, metadata={"help": "SwanLab workspace (organisation)."}
    )
    val_questions: int = field(
        default=3, metadata={"help": "Validation questions answered and logged as text after training."}
    )
    val_max_new_tokens: int = field(default=1024, metadata={"help": "Token budget of those answers."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh even when output_dir holds checkpoints (otherwise: error, or --resume)."
        },
    )


@dataclass
class Recipe:
    name: str
    path: Path
    medsft: MedsftArgs
    sft: SFTConfig

    def resolved(self) -> dict[str, Any]:
        """Every setting in effect, JSON-friendly (for the run card and the tracker)."""
        return {
            "recipe": self.name,
            "recipe_path": str(self.path),
            "medsft": asdict(self.medsft),
            "sft": {key: _jsonable(value) for key, value in self.sft.to_dict().items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)


class _RecipeParser(HfArgumentParser):
    """argparse without the exit: a bad value becomes a RecipeError naming it."""

    def error(self, message: str):
        raise RecipeError(message)


def valid_keys() -> set[str]:
    return {f.name for f in fields(MedsftArgs)} | {f.name for f in fields(SFTConfig) if f.init}


def _override_keys(parser: HfArgumentParser) -> set[str]:
    """Every `--flag` the parser knows (includes the `--no_<flag>` forms of true-by-default booleans)."""
    return {option[2:].replace("-", "_") for action in parser._actions for option in action.option_strings}


def recipe_path(recipe: str | Path) -> Path:
    """`full_1epoch` -> recipes/full_1epoch.yaml; a path is taken as is."""
    candidate = Path(recipe).expanduser()
    if candidate.suffix in {".yaml", ".yml"} or candidate.parent != Path("."):
        if not candidate.is_file():
            raise RecipeError(f"Recipe file {str(recipe)!r} does not exist.")
        return candidate.resolve()
    named = RECIPES_DIR / f"{recipe}.yaml"
    if not named.is_file():
        available = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise RecipeError(f"No recipe named {str(recipe)!r} in {RECIPES_DIR} (available: {available}).")
    return named


def _unknown_key_error(key: str, where: str) -> RecipeError:
    close = difflib.get_close_matches(key, sorted(valid_keys()), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return RecipeError(f"Unknown key {key!r} in {where}.{hint}")


def _check_override_keys(overrides: list[str], parser: HfArgumentParser) -> None:
    keys = _override_keys(parser)
    for item in overrides:
        if item.startswith("--"):
            key = item[2:].split("=", 1)[0].replace("-", "_")
            if key not in keys:
                raise _unknown_key_error(key, "the command-line overrides")


def load_recipe(recipe: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe, apply `--key value` overrides, and build the validated `MedsftArgs` and `SFTConfig`."""
    path = recipe_path(recipe)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"Recipe {path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of `key: value` lines.")
    for key in values:
        if key not in valid_keys():
            raise _unknown_key_error(str(key), str(path))
    parser = _RecipeParser((MedsftArgs, SFTConfig))
    overrides = list(overrides or [])
    _check_override_keys(overrides, parser)

    name = path.stem
    values.setdefault("output_dir", str(OUTPUT_DIR / name))
    values.setdefault("run_name", name)
    if "gradient_checkpointing" not in values:  # TRL's default (on), under transformers' new name
        values.setdefault("activation_checkpointing", True)
    for action in parser._actions:  # recipe values become the defaults that overrides replace
        if action.dest in values:
            action.default = values[action.dest]
            action.required = False
    try:
        medsft_args, sft_args = parser.parse_args_into_dataclasses(args=overrides)
    except RecipeError as error:
        raise RecipeError(f"Recipe {path} (or its overrides): {error}") from error
    except (ValueError, TypeError) as error:
        hint = " This recipe needs a GPU with bf16; on CPU use RECIPE=smoke." if "bf16" in str(error) else ""
        raise RecipeError(f"Recipe {path}: {error}{hint}") from error
    _check_consistency(medsft_args, sft_args, path)
    return Recipe(name=name, path=path, medsft=medsft_args, sft=sft_args)


def _check_consistency(medsft: MedsftArgs, sft: SFTConfig, path: Path) -> None:
    if getattr(sft, "trust_remote_code", False):
        raise RecipeError(f"{path}: trust_remote_code must stay off (Qwen3 needs no remote code).")
    if not sft.assistant_only_loss:
        raise RecipeError(f"{path}: assistant_only_loss must be true (loss on the assistant turn only).")
    if medsft.val_questions < 0:
        raise RecipeError(f"{path}: val_questions must be >= 0.")
