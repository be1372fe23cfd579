"""Recipes: every shipped recipe parses with TRL's parser; bad keys, types, ranges, duplicates are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from peft import LoraConfig
from trl import GRPOConfig, ModelConfig, SFTConfig, get_peft_config

from medsft.errors import MedsftError
from medsft.paths import output_dir, recipes_dir
from medsft.recipe import MedsftArgs, RecipeError, RecipeParser, load_recipe

RECIPES = sorted(recipes_dir().glob("*.yaml"))
# a valid CPU recipe that the cases below add one line to
BASE = "model_name_or_path: tiny\nuse_cpu: true\nbf16: false\nassistant_only_loss: true\n"


@pytest.fixture
def bf16_capable(monkeypatch):
    """Validate GPU recipes here as on a bf16 GPU (transformers refuses bf16 without one)."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)


def recipe_file(tmp_path: Path, text: str, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_three_recipes_exist():
    assert {"full_1epoch", "lora", "smoke"} <= {path.stem for path in RECIPES}


def test_the_parser_is_trls_over_its_own_dataclasses():
    from trl import TrlParser

    parser = RecipeParser()
    assert isinstance(parser, TrlParser)
    assert parser.dataclass_types == [MedsftArgs, SFTConfig, ModelConfig]


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_parses_and_validates(path: Path, bf16_capable):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    recipe = load_recipe(path.stem)
    if recipe.medsft.stage == "grpo":  # GRPO trains on generated completions only
        assert isinstance(recipe.sft, GRPOConfig)
    else:
        assert recipe.sft.assistant_only_loss
    assert recipe.sft.output_dir == str(output_dir() / path.stem)
    assert recipe.sft.run_name == path.stem
    for key, value in raw.items():  # every value in the file reaches the config it belongs to
        owners = [config for config in (recipe.medsft, recipe.sft, recipe.model) if hasattr(config, key)]
        assert len(owners) == 1, key
        parsed = getattr(owners[0], key)
        if key == "report_to":
            assert parsed == [value]
        elif isinstance(value, float) or key == "learning_rate":
            assert parsed == pytest.approx(float(value))
        else:
            assert parsed == value, key


def test_full_1epoch_keeps_the_original_setup(bf16_capable):
    recipe = load_recipe("full_1epoch")
    sft = recipe.sft
    assert (sft.num_train_epochs, sft.per_device_train_batch_size, sft.gradient_accumulation_steps) == (
        1,
        1,
        4,
    )
    assert (sft.learning_rate, sft.max_length, sft.eval_steps, sft.save_steps) == (1e-4, 2048, 100, 500)
    assert sft.save_total_limit == 3 and sft.bf16 and sft.activation_checkpointing
    assert (recipe.model.model_name_or_path, recipe.model.dtype) == ("Qwen/Qwen3-1.7B", "bfloat16")
    assert get_peft_config(recipe.model) is None


def test_lora_recipe_gives_trls_lora_config_on_every_linear_layer(bf16_capable):
    recipe = load_recipe("lora")
    config = get_peft_config(recipe.model)
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (64, 128, 0.05)
    assert config.target_modules == "all-linear" and config.task_type == "CAUSAL_LM"


def test_overrides_apply_on_top_of_the_yaml():
    recipe = load_recipe(
        "smoke",
        ["--learning_rate", "2e-5", "--max_steps=3", "--dataset", "x", "--use_peft", "--lora_r", "4"],
    )
    assert recipe.sft.learning_rate == 2e-5 and recipe.sft.max_steps == 3
    assert recipe.medsft.dataset == "x" and recipe.model.use_peft and recipe.model.lora_r == 4
    assert load_recipe("smoke").sft.learning_rate == 5e-3  # the file's value when not overridden


def test_model_fields_use_trls_names(tmp_path):
    path = recipe_file(tmp_path, BASE + "dtype: bfloat16\nattn_implementation: eager\n")
    model = load_recipe(path, ["--lora_target_modules", "q_proj", "v_proj"]).model
    assert (model.dtype, model.attn_implementation) == ("bfloat16", "eager")
    assert model.lora_target_modules == ["q_proj", "v_proj"]


def test_recipe_by_path(tmp_path):
    path = recipe_file(tmp_path, (recipes_dir() / "smoke.yaml").read_text(encoding="utf-8"))
    recipe = load_recipe(path)
    assert recipe.name == "mine" and recipe.sft.output_dir == str(output_dir() / "mine")


def test_output_goes_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDSFT_OUTPUT_DIR", raising=False)
    assert load_recipe("smoke").sft.output_dir == str(tmp_path / "output" / "smoke")


def test_misspelt_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = recipe_file(tmp_path, BASE + "learning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError, match=r"Unknown key 'learning_rat'.*Did you mean 'learning_rate'\?"):
        load_recipe(path)


def test_old_model_key_points_to_trls_name(tmp_path):
    path = recipe_file(tmp_path, "model: tiny\n")
    with pytest.raises(RecipeError, match=r"Unknown key 'model'.*Did you mean 'model_name_or_path'\?"):
        load_recipe(path)


def test_misspelt_override_is_named_with_a_suggestion():
    with pytest.raises(
        RecipeError, match=r"Unknown key 'per_device_batch_size'.*per_device_(train|eval)_batch"
    ):
        load_recipe("smoke", ["--per_device_batch_size", "2"])


def test_an_abbreviated_override_is_a_misspelt_key_not_a_prefix():
    with pytest.raises(RecipeError, match=r"Unknown key 'learning_rat'.*Did you mean 'learning_rate'\?"):
        load_recipe("smoke", ["--learning_rat", "1e-4"])


def test_the_last_override_of_a_key_wins():
    assert load_recipe("smoke", ["--max_steps", "3", "--max_steps=5"]).sft.max_steps == 5


def test_a_stray_word_among_the_overrides_is_an_error():
    with pytest.raises(RecipeError, match=r"Unexpected command-line argument 'stray': overrides are --key"):
        load_recipe("smoke", ["--max_steps", "3", "stray"])


def test_the_system_prompt_key_is_text_or_unset(tmp_path):
    assert load_recipe("smoke").medsft.system_prompt is None
    assert load_recipe("smoke", ["--system_prompt", ""]).medsft.system_prompt == ""
    with pytest.raises(RecipeError, match=r"system_prompt expects text or null, got 3"):
        load_recipe(recipe_file(tmp_path, BASE + "system_prompt: 3\n"))


def test_bad_override_value_is_an_error_naming_the_argument():
    with pytest.raises(RecipeError, match="learning_rate.*invalid float value: 'fast'"):
        load_recipe("smoke", ["--learning_rate", "fast"])


def test_recipe_errors_follow_the_error_contract():
    assert issubclass(RecipeError, MedsftError)


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(RecipeError, match="available: .*full_1epoch.*smoke"):
        load_recipe("ful_1epoch")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "mapping"),
        ("model_name_or_path: [unclosed\n", "not valid YAML"),
        (
            BASE.replace("assistant_only_loss: true", "assistant_only_loss: false"),
            "assistant_only_loss must be",
        ),
        (BASE + "trust_remote_code: true\n", "trust_remote_code must stay off"),
        (BASE + "load_in_4bit: true\n", "load_in_4bit / load_in_8bit are not supported"),
        ("use_cpu: true\nbf16: false\n", "model_name_or_path is not set"),
        (BASE + "tiny_hidden_size: 20\n", "tiny_hidden_size must be a multiple of 8"),
    ],
)
def test_invalid_recipes(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe_file(tmp_path, text))


# Strict values: each of these was accepted (or failed only after setup) by the earlier parser.
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("learning_rate: true", r"learning_rate expects a number, got true \(a boolean\)"),
        ("learning_rate: [1, 2]", r"learning_rate expects a number, got \[1, 2\] \(a list\)"),
        ("learning_rate: fast", r"learning_rate expects a number, got 'fast'"),
        ("max_steps: 2.7", r"max_steps expects a whole number, got 2.7"),
        ("max_steps: -5", r"max_steps must be > 0 \(or -1"),
        ("max_steps: 0", r"max_steps must be > 0"),
        ("save_steps: -4", r"save_steps must be > 0; got -4"),
        ("per_device_train_batch_size: 0", r"per_device_train_batch_size must be >= 1; got 0"),
        ("gradient_accumulation_steps: 0", r"gradient_accumulation_steps must be >= 1"),
        ("learning_rate: -1.0e-4", r"learning_rate must be >= 0"),
        ("learning_rate: .nan", r"learning_rate must be a finite number"),
        ("lora_dropout: 1.5", r"lora_dropout must be >= 0 and < 1"),
        ("val_questions: -1", r"val_questions must be >= 0"),
        ("seed: 4.0", r"seed expects a whole number"),
        ("use_peft: 1", r"use_peft expects true/false, got 1 \(a whole number\)"),
        ("eval_strategy: sometimes", r"eval_strategy must be one of no, steps, epoch"),
        ("dtype: float8", r"dtype must be one of auto, bfloat16, float16, float32"),
        ("run_name: 2024", r"run_name expects text or null, got 2024"),
        ("learning_rate: null", r"learning_rate expects a number, got null"),
    ],
)
def test_values_are_checked_strictly_before_anything_loads(tmp_path, line, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe_file(tmp_path, f"{BASE}{line}\n"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--max_steps", "-5"], r"max_steps must be > 0"),
        (["--max_steps", "2.7"], r"invalid int value: '2.7'"),
        (["--save_steps=-4"], r"save_steps must be > 0"),
        (["--per_device_train_batch_size", "0"], r"per_device_train_batch_size must be >= 1"),
        (["--learning_rate", "true"], r"invalid float value: 'true'"),
    ],
)
def test_override_values_are_checked_the_same_way(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("smoke", override)


def test_string_values_are_read_as_the_command_line_reads_them(tmp_path):
    # YAML 1.1 reads `1e-4` (no dot) as text: it is converted like `--learning_rate 1e-4`
    path = recipe_file(tmp_path, BASE + "learning_rate: 1e-4\nuse_peft: 'true'\nmax_steps: '3'\n")
    recipe = load_recipe(path)
    assert (recipe.sft.learning_rate, recipe.model.use_peft, recipe.sft.max_steps) == (1e-4, True, 3)


def test_eval_steps_below_one_is_a_ratio_and_valid(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, BASE + "eval_strategy: steps\neval_steps: 0.25\n"))
    assert recipe.sft.eval_steps == 0.25


def test_a_key_set_twice_is_an_error_naming_it(tmp_path):
    path = recipe_file(tmp_path, BASE + "learning_rate: 1.0e-4\nmax_steps: 3\nlearning_rate: 2.0e-4\n")
    with pytest.raises(RecipeError, match=r"key 'learning_rate' is set twice \(lines 5 and 7\)"):
        load_recipe(path)


def test_bad_values_fail_before_any_model_or_data_is_touched(tmp_path, monkeypatch):
    from medsft import train

    def fail(*args, **kwargs):
        raise AssertionError("model or data loaded before the recipe was validated")

    for name in ("preflight", "load_tokenizer_and_model_dir", "load_data", "load_model"):
        monkeypatch.setattr(train, name, fail)
    with pytest.raises(RecipeError, match="learning_rate expects a number"):
        train.main(["--recipe", str(recipe_file(tmp_path, BASE + "learning_rate: true\n"))])


def test_gpu_recipe_on_a_cpu_machine_says_what_to_do(monkeypatch):
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: False)
    with pytest.raises(RecipeError, match="needs a GPU with bf16; on CPU use --recipe smoke"):
        load_recipe("full_1epoch")


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs(name, kind):
    config = yaml.safe_load((recipes_dir() / "accelerate" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert config["distributed_type"] == kind
    assert config["mixed_precision"] == "no"  # precision comes from the recipe, so CPU smoke stays fp32
