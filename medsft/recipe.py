"""Recipes: flat YAML files of TRL `SFTConfig` (or, with `stage: grpo`, `GRPOConfig`) and `ModelConfig`
fields plus a few medsft keys.

A recipe is `<name>.yaml` in the shipped recipes folder, or any YAML path. TRL's own `TrlParser` over
(MedsftArgs, SFTConfig or GRPOConfig, ModelConfig) reads it as `trl sft --config` does: the file's values
become the defaults that `--key value` overrides replace. On top of TRL, before any model or data is loaded:
- a misspelt key (in the file or an override) is an error naming the closest valid key (TRL passes it on);
- a key set twice in the file is an error;
- a value of the wrong type (a bool is not a number, an int field takes no float) or out of range is an error
  naming the key;
- settings that only make sense together are checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

from medsft.errors import MedsftError
from medsft.model import (
    RANDOM_MODEL_PREFIX,
    TRAIN_MODEL_SETTING,
    TRAIN_TOKENIZER_SETTING,
    ModelSourceError,
    check_model_source,
    random_model_config,
)
from medsft.paths import output_dir, recipes_dir
from medsft.yaml_files import DuplicateKey, load_yaml

TINY_MODEL = "tiny"  # `model_name_or_path: tiny` builds a random-weight Qwen3 in memory (smoke runs, tests)
# `model_name_or_path: random:<config.json>`: random weights of that exact architecture (medsft.model)
RENAMED_KEYS = {
    "model": "model_name_or_path"
}  # earlier medsft names of TRL fields, for the "did you mean" hint


class RecipeError(MedsftError):
    """A recipe or an override is invalid: unknown key, wrong type or range, missing file."""


STAGES = {"sft": SFTConfig, "grpo": GRPOConfig}  # `stage:` -> the TRL config class of the run's trainer


@dataclass
class MedsftArgs:
    """The medsft keys of a recipe: what TRL's `SFTConfig` (`GRPOConfig`) and `ModelConfig` have no field
    for."""

    stage: str = field(
        default="sft",
        metadata={
            "help": "sft: supervised fine-tuning (SFTConfig); grpo: reinforcement learning on verifiable MCQ "
            "rewards (GRPOConfig, data from `medsft data --kind mcq`).",
            "choices": list(STAGES),
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["correctness", "format"],
        metadata={
            "help": "stage grpo: the reward functions of medsft.rewards, in the order of reward_weights "
            "(correctness, format, length_guard)."
        },
    )
    length_guard_buffer: int = field(
        default=256,
        metadata={
            "help": "stage grpo, reward length_guard: the last tokens before max_completion_length over "
            "which the penalty falls from 0 to -1."
        },
    )

    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer source when it differs from the model (default: the model's own; for `tiny`, "
            "the Qwen3 tokenizer shipped with medsft)."
        },
    )
    model_cache_dir: str | None = field(
        default=None, metadata={"help": "Download cache for ModelScope / the Hugging Face hub."}
    )
    tiny_hidden_size: int = field(default=64, metadata={"help": "Hidden size of `model_name_or_path: tiny`."})
    tiny_num_layers: int = field(
        default=2, metadata={"help": "Number of layers of `model_name_or_path: tiny`."}
    )
    dataset: str = field(
        default="delicate_medical_r1_data",
        metadata={
            "help": "Folder with train.jsonl and val.jsonl written by `medsft data`: a name under "
            "data/processed/ ($MEDSFT_DATA_DIR), or a path."
        },
    )
    raw_source: str | None = field(
        default=None,
        metadata={"help": "A raw {question, think, answer} file converted on the fly instead of `dataset`."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": 'The system turn of every training and validation row, replacing the rows\' own ("": '
            "no system turn). Unset: the rows keep theirs (raw_source rows get medsft's default). The prompt "
            "trained with is recorded in the run card and in final/medsft.json."
        },
    )
    empty_think_loss: bool = field(
        default=False,
        metadata={
            "help": "Non-thinking rows (an empty think block): false puts the empty block in the prompt, as "
            "inference with enable_thinking=False writes it, and trains from the answer on; true trains the "
            "empty block too and ends the user turn with Qwen3's /no_think switch (medsft.thinking_modes)."
        },
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
    sft: SFTConfig  # the trainer's config: a GRPOConfig for stage grpo
    model: ModelConfig

    def resolved(self) -> dict[str, Any]:
        """Every setting in effect, JSON-friendly (for the run card and the tracker)."""
        return {
            "recipe": self.name,
            "recipe_path": str(self.path),
            "medsft": asdict(self.medsft),
            "model": _jsonable(asdict(self.model)),
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


# ---------------------------------------------------------------- reading the file


def read_recipe_file(path: Path) -> dict[str, Any]:
    try:
        values = load_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKey as error:
        raise RecipeError(f"Recipe {path}: {error}; keep one.") from error
    except yaml.YAMLError as error:
        raise RecipeError(f"Recipe {path} is not valid YAML: {' '.join(str(error).split())}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"Recipe {path} cannot be read: {error}") from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of `key: value` lines.")
    return {str(key): value for key, value in values.items()}


def recipe_path(recipe: str | Path) -> Path:
    """`full_1epoch` -> the shipped recipes/full_1epoch.yaml; a path is taken as is."""
    candidate = Path(recipe).expanduser()
    if candidate.suffix in {".yaml", ".yml"} or candidate.parent != Path("."):
        if not candidate.is_file():
            raise RecipeError(f"Recipe file {str(recipe)!r} does not exist.")
        return candidate.resolve()
    folder = recipes_dir()
    named = folder / f"{recipe}.yaml"
    if not named.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise RecipeError(f"No recipe named {str(recipe)!r} in {folder} (available: {available}).")
    return named


# ---------------------------------------------------------------- the parser


class RecipeParser(TrlParser):
    """TrlParser over (MedsftArgs, SFTConfig or GRPOConfig, ModelConfig); every failure is a RecipeError
    naming the key."""

    def __init__(self, stage: str = "sft") -> None:
        # no abbreviations: `--learning_rat` is a misspelt key, not `--learning_rate`
        super().__init__((MedsftArgs, STAGES[stage], ModelConfig), allow_abbrev=False)
        self.fields: dict[str, dataclasses.Field] = {}
        self.hints: dict[str, Any] = {}
        for dataclass_type in self.dataclass_types:
            hints = typing.get_type_hints(dataclass_type)
            for item in dataclasses.fields(dataclass_type):
                if item.init:
                    self.fields[item.name] = item
                    self.hints[item.name] = hints[item.name]
        # every `--flag` (also the `--no_<flag>` forms of true-by-default booleans) -> its action
        self.options = {
            option[2:].replace("-", "_"): action
            for action in self._actions
            for option in action.option_strings
            if option.startswith("--")
        }

    def error(self, message: str):
        raise RecipeError(message)

    def unknown_key_error(self, key: str, where: str) -> RecipeError:
        close = [RENAMED_KEYS[key]] if key in RENAMED_KEYS else []
        close = close or difflib.get_close_matches(key, sorted(self.fields), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return RecipeError(f"Unknown key {key!r} in {where}.{hint}")

    def check_unknown_overrides(self, unknown: list[str]) -> None:
        """What argparse left over from the overrides: a misspelt key is named with the closest valid one."""
        for item in unknown:
            if item.startswith("--"):
                raise self.unknown_key_error(item[2:].split("=", 1)[0], "the command-line overrides")
        if unknown:
            raise RecipeError(f"Unexpected command-line argument {unknown[0]!r}: overrides are --key value.")

    def typed_value(self, key: str, value: Any) -> Any:
        """A file's value checked against its field's type; a string is read as the command line reads it."""
        hint, action = self.hints[key], self.options[key]
        if not _matches(value, hint):
            if not isinstance(value, str) or action.type is None:
                raise RecipeError(f"{key} expects {_describe(hint)}, got {_shown(value)}.")
            try:
                value = action.type(value)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
                raise RecipeError(f"{key} expects {_describe(hint)}, got {_shown(value)}.") from error
        choices = action.choices
        items = value if isinstance(value, list) else [value]
        if choices and value is not None and any(item not in choices for item in items):
            raise RecipeError(f"{key} must be one of {', '.join(map(str, choices))}; got {_shown(value)}.")
        return value

    def parse_settings(self, values: dict, overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Typed file values as defaults (TRL's config mechanism), then the overrides (argparse: the last
        `--key value` wins): every key's value, before any config object is built, and what argparse did not
        recognise."""
        self.set_defaults_with_config(**values)
        settings, unknown = self.parse_known_args(overrides)
        return vars(settings), unknown


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value has the field's type: no bool for a number, no float for an int."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list or hint is list:
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value if args)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if isinstance(hint, type) and issubclass(hint, Enum):
        return isinstance(value, hint) or value in {member.value for member in hint}
    return True  # any other type: TRL's and transformers' own checks apply


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(str(member.value) for member in hint)
    return getattr(hint, "__name__", str(hint))


def _shown(value: Any) -> str:
    """A YAML value as written, with its kind: `true (a boolean)`, `[1, 2] (a list)`, `'fast'`."""
    if isinstance(value, str):
        return repr(value)
    kinds = {bool: "a boolean", int: "a whole number", float: "a number", list: "a list", dict: "a mapping"}
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return f"{text} ({kinds[type(value)]})" if type(value) in kinds else text


# ---------------------------------------------------------------- value ranges

# steps: > 0, or -1 where TRL means "unset"; sizes >= 1; rates and counts >= 0
AT_LEAST_ONE = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "eval_accumulation_steps",
    "save_total_limit",
    "max_length",
    "lora_r",
    "lora_alpha",
    "tiny_hidden_size",
    "tiny_num_layers",
    "val_max_new_tokens",
    "num_generations",
    "max_completion_length",
    "length_guard_buffer",
)
AT_LEAST_ZERO = (
    "learning_rate",
    "weight_decay",
    "warmup_steps",
    "max_grad_norm",
    "adam_epsilon",
    "seed",
    "data_seed",
    "dataloader_num_workers",
    "val_questions",
)
SEEDS = ("seed", "data_seed")  # numpy and torch take seeds below 2**32 (torch up to 2**64 - 1)
NOT_EMPTY = ("output_dir", "run_name")
# a step count below 1 is a fraction of the run's steps (transformers' rule)
ABOVE_ZERO = ("num_train_epochs", "logging_steps", "eval_steps", "save_steps")
BELOW_ONE = ("lora_dropout", "adam_beta1", "adam_beta2")  # in [0, 1)


def check_ranges(settings: dict[str, Any]) -> None:
    def fail(key: str, rule: str) -> typing.NoReturn:
        raise RecipeError(f"{key} must be {rule}; got {settings[key]!r}.")

    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            fail(key, "a finite number")
    if settings["max_steps"] != -1 and settings["max_steps"] <= 0:
        fail("max_steps", "> 0 (or -1: train num_train_epochs)")
    for keys, holds, rule in (
        (AT_LEAST_ONE, lambda v: v >= 1, ">= 1"),
        (AT_LEAST_ZERO, lambda v: v >= 0, ">= 0"),
        (ABOVE_ZERO, lambda v: v > 0, "> 0"),
        (BELOW_ONE, lambda v: 0 <= v < 1, ">= 0 and < 1"),
    ):
        for key in keys:
            if settings.get(key) is not None and not holds(settings[key]):
                fail(key, rule)
    for key in SEEDS:
        if settings.get(key) is not None and settings[key] >= 2**32:
            fail(key, "below 2**32 (4294967296)")
    for key in NOT_EMPTY:
        if key in settings and not str(settings[key] or "").strip():
            fail(key, "a non-empty name")


# ---------------------------------------------------------------- loading


def load_recipe(
    recipe: str | Path, overrides: list[str] | None = None, *, check_sources: bool = False
) -> Recipe:
    """Read a recipe and its `--key value` overrides in one pass: validated MedsftArgs, SFTConfig and
    ModelConfig. With `check_sources`, a model or tokenizer that cannot be had fails as soon as the values are
    parsed, before their ranges and TRL's own checks (bf16 needs a GPU)."""
    path = recipe_path(recipe)
    values = read_recipe_file(path)
    parser = RecipeParser(recipe_stage(path, values, list(overrides or [])))
    for key in values:
        if key not in parser.fields:
            raise parser.unknown_key_error(key, str(path))

    name = path.stem
    values.setdefault("output_dir", str(output_dir() / name))
    values.setdefault("run_name", name)
    if "gradient_checkpointing" not in values:  # TRL's default (on), under transformers' new name
        values.setdefault("activation_checkpointing", True)
    try:
        values = {key: parser.typed_value(key, value) for key, value in values.items()}
    except RecipeError as error:
        raise RecipeError(f"Recipe {path}: {error}") from error
    try:
        settings, unknown = parser.parse_settings(values, list(overrides or []))
    except RecipeError as error:
        raise RecipeError(f"Recipe {path} (or its overrides): {error}") from error
    parser.check_unknown_overrides(unknown)
    try:
        if check_sources:
            check_model_sources(settings)
        check_ranges(settings)
        medsft_args, sft_args, model_args = parser.parse_dict(settings)
    except RecipeError as error:
        raise RecipeError(f"Recipe {path} (or its overrides): {error}") from error
    except (ValueError, TypeError) as error:  # SFTConfig's and ModelConfig's own checks
        hint = (
            " This recipe needs a GPU with bf16; on CPU use --recipe smoke." if "bf16" in str(error) else ""
        )
        raise RecipeError(f"Recipe {path}: {error}{hint}") from error
    loaded = Recipe(name=name, path=path, medsft=medsft_args, sft=sft_args, model=model_args)
    check_consistency(loaded)
    return loaded


def recipe_stage(path: Path, values: dict[str, Any], overrides: list[str]) -> str:
    """The recipe's `stage` (an override `--stage X` wins): it picks the trainer config the keys belong to."""
    stage = values.get("stage", "sft")
    for position, item in enumerate(overrides):
        if item == "--stage" and position + 1 < len(overrides):
            stage = overrides[position + 1]
        elif item.startswith("--stage="):
            stage = item.split("=", 1)[1]
    if stage not in STAGES:
        raise RecipeError(f"Recipe {path}: stage must be one of {', '.join(STAGES)}; got {_shown(stage)}.")
    return stage


def check_model_sources(settings: dict[str, Any]) -> None:
    """The model and tokenizer of the parsed settings can be had: a local folder, something downloaded
    before, or a hub that answers one quick connection attempt (nothing is downloaded here)."""
    revision = None if settings["model_revision"] == "main" else settings["model_revision"]
    for key, setting, source_revision in (
        ("model_name_or_path", TRAIN_MODEL_SETTING, revision),
        ("tokenizer", TRAIN_TOKENIZER_SETTING, None),
    ):
        source = settings[key]
        if source and source != TINY_MODEL and not source.startswith(RANDOM_MODEL_PREFIX):
            check_model_source(source, setting, settings["model_cache_dir"], source_revision)


def check_consistency(recipe: Recipe) -> None:
    """Settings that are each valid but wrong for medsft, or wrong together."""
    model, sft, where = recipe.model, recipe.sft, str(recipe.path)
    problems = []
    if not model.model_name_or_path:
        problems.append(
            "model_name_or_path is not set (a ModelScope id, a local folder, hf:<id>, tiny "
            "or random:<config.json>)"
        )
    if sft.trust_remote_code:
        problems.append("trust_remote_code must stay off (Qwen3 needs no remote code)")
    grpo = recipe.medsft.stage == "grpo"
    if not grpo and not sft.assistant_only_loss:
        problems.append("assistant_only_loss must be true (loss on the assistant turn only)")
    if model.load_in_4bit or model.load_in_8bit:
        problems.append("load_in_4bit / load_in_8bit are not supported by medsft train (use the lora recipe)")
    if model.lora_task_type != "CAUSAL_LM":
        problems.append("lora_task_type must be CAUSAL_LM")
    try:
        random_model_config(model.model_name_or_path)
    except ModelSourceError as error:
        problems.append(str(error).rstrip("."))
    if model.model_name_or_path == TINY_MODEL and recipe.medsft.tiny_hidden_size % 8:
        problems.append("tiny_hidden_size must be a multiple of 8 (4 attention heads with an even head size)")
    if grpo:
        problems += grpo_problems(recipe)
    if problems:
        raise RecipeError(f"Recipe {where}: {'; '.join(problems)}.")


def grpo_problems(recipe: Recipe) -> list[str]:
    """A GRPO recipe's rewards and their weights agree with medsft.rewards."""
    from medsft.rewards import REWARDS

    problems = []
    names, weights = recipe.medsft.reward_funcs, recipe.sft.reward_weights
    unknown = [name for name in names if name not in REWARDS]
    if not names or unknown:
        problems.append(f"reward_funcs must name rewards among {', '.join(REWARDS)}; got {names}")
    if weights is not None and len(weights) != len(names):
        problems.append(f"reward_weights has {len(weights)} weights for {len(names)} reward_funcs")
    source = recipe.model.model_name_or_path or ""
    if recipe.sft.beta and (source == TINY_MODEL or source.startswith(RANDOM_MODEL_PREFIX)):
        problems.append(
            f"beta {recipe.sft.beta:g} needs a reference model, which TRL loads from the model's folder; "
            f"{source} is built in memory: set beta: 0.0 (or train a saved model)"
        )
    return problems
