"""Recipes: every file in recipes/ parses and validates; unknown keys and bad values are named errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medsft.paths import OUTPUT_DIR
from medsft.recipe import RECIPES_DIR, RecipeError, load_recipe, valid_keys

RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))


@pytest.fixture
def bf16_capable(monkeypatch):
    """Validate GPU recipes here as on a bf16 GPU (transformers refuses bf16 without one)."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)


def test_the_three_recipes_exist():
    assert {"full_1epoch", "lora", "smoke"} <= {path.stem for path in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_parses_and_validates(path: Path, bf16_capable):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(raw) <= valid_keys()
    recipe = load_recipe(path.stem)
    assert recipe.sft.assistant_only_loss
    assert recipe.sft.output_dir == str(OUTPUT_DIR / path.stem)
    assert recipe.sft.run_name == path.stem
    for key, value in raw.items():  # every value in the file reaches the config it belongs to
        target = recipe.medsft if hasattr(recipe.medsft, key) else recipe.sft
        parsed = getattr(target, key)
        if key == "report_to":
            assert parsed == [value]
        elif isinstance(value, float) or key == "learning_rate":
            assert parsed == pytest.approx(float(value))
        else:
            assert parsed == value, key


def test_full_1epoch_keeps_the_original_setup(bf16_capable):
    sft = load_recipe("full_1epoch").sft
    assert (sft.num_train_epochs, sft.per_device_train_batch_size, sft.gradient_accumulation_steps) == (
        1,
        1,
        4,
    )
    assert (sft.learning_rate, sft.max_length, sft.eval_steps, sft.save_steps) == (1e-4, 2048, 100, 500)
    assert sft.save_total_limit == 3 and sft.bf16 and sft.activation_checkpointing


def test_lora_recipe_uses_peft(bf16_capable):
    recipe = load_recipe("lora")
    assert recipe.medsft.use_peft and recipe.medsft.lora_r > 0


def test_overrides_apply_on_top_of_the_yaml():
    recipe = load_recipe(
        "smoke", ["--learning_rate", "2e-5", "--max_steps=3", "--dataset", "x", "--use_peft"]
    )
    assert recipe.sft.learning_rate == 2e-5 and recipe.sft.max_steps == 3
    assert recipe.medsft.dataset == "x" and recipe.medsft.use_peft
    assert load_recipe("smoke").sft.learning_rate == 5e-3  # the file's value when not overridden


def test_recipe_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text((RECIPES_DIR / "smoke.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.name == "mine" and recipe.sft.output_dir == str(OUTPUT_DIR / "mine")


def test_misspelt_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model: tiny\nlearning_rat: 1.0e-4\nassistant_only_loss: true\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"Unknown key 'learning_rat'.*Did you mean 'learning_rate'\?"):
        load_recipe(path)


def test_misspelt_override_is_named_with_a_suggestion():
    with pytest.raises(
        RecipeError, match=r"Unknown key 'per_device_batch_size'.*per_device_(train|eval)_batch"
    ):
        load_recipe("smoke", ["--per_device_batch_size", "2"])


def test_bad_value_is_an_error_naming_the_argument():
    with pytest.raises(RecipeError, match="learning_rate.*invalid float value: 'fast'"):
        load_recipe("smoke", ["--learning_rate", "fast"])


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(RecipeError, match="available: .*full_1epoch.*smoke"):
        load_recipe("ful_1epoch")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "mapping"),
        ("model: [unclosed\n", "not valid YAML"),
        ("assistant_only_loss: false\n", "assistant_only_loss must be true"),
        ("trust_remote_code: true\n", "trust_remote_code must stay off"),
    ],
)
def test_invalid_recipes(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text if text.startswith("-") else f"use_cpu: true\nbf16: false\n{text}", encoding="utf-8")
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_gpu_recipe_on_a_cpu_machine_says_what_to_do(monkeypatch):
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: False)
    with pytest.raises(RecipeError, match="needs a GPU with bf16; on CPU use RECIPE=smoke"):
        load_recipe("full_1epoch")


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs(name, kind):
    config = yaml.safe_load((RECIPES_DIR / "accelerate" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert config["distributed_type"] == kind
    assert config["mixed_precision"] == "no"  # precision comes from the recipe, so CPU smoke stays fp32
