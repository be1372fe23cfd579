"""`model_name_or_path: random:<config.json>` (a random-weight model of a config's exact architecture), and
the GPU acceptance script checked end to end by its dry run on CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import require_shared

from medsft import train
from medsft.model import build_random_model
from medsft.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parent.parent
SMALL_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


@pytest.fixture
def small_config(tmp_path) -> Path:
    """Qwen3-1.7B's config.json with a tiny width and depth (vocabulary, tying and the rest kept)."""
    values = json.loads(require_shared("models/Qwen3-1.7B-tokenizer/config.json").read_text(encoding="utf-8"))
    values.update(SMALL_SHAPE)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def test_random_model_has_the_exact_architecture_of_its_config(small_config):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = build_random_model(small_config, torch.bfloat16, seed=3)
    built_by_transformers = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(small_config))

    shapes = lambda m: {name: tuple(p.shape) for name, p in m.state_dict().items()}  # noqa: E731
    assert shapes(model) == shapes(built_by_transformers)
    assert type(model) is type(built_by_transformers)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied as the config says
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    # initialised as transformers does: norm scales 1, matrices N(0, initializer_range)
    assert bool((model.model.layers[1].post_attention_layernorm.weight == 1).all())
    q_proj = model.model.layers[0].self_attn.q_proj.weight.float()
    assert abs(q_proj.std().item() - 0.02) < 0.002 and abs(q_proj.mean().item()) < 0.002
    # real rotary frequencies (buffers are computed, not left empty)
    torch.testing.assert_close(
        model.model.rotary_emb.inv_freq, built_by_transformers.model.rotary_emb.inv_freq
    )
    # seeded
    same, other = (
        build_random_model(small_config, torch.bfloat16, seed=3),
        build_random_model(small_config, seed=4),
    )
    assert torch.equal(same.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert not torch.equal(
        other.model.embed_tokens.weight.to(torch.bfloat16), model.model.embed_tokens.weight
    )
    assert other.dtype == torch.bfloat16  # no dtype: the config's own (Qwen3-1.7B ships bfloat16)
    ids = torch.arange(8).unsqueeze(0)
    loss = model(input_ids=ids, labels=ids).loss.item()
    assert abs(loss - math.log(model.config.vocab_size)) < 1.0  # small random logits: about ln(vocabulary)


def test_a_recipe_trains_a_random_model_with_the_bundled_tokenizer(
    small_config, smoke_data, tmp_path, qwen3_tokenizer
):
    from transformers import AutoTokenizer

    overrides = [
        *("--model_name_or_path", f"random:{small_config}", "--max_steps", "1", "--dataset", str(smoke_data)),
        *("--output_dir", str(tmp_path / "run"), "--eval_strategy", "no", "--save_strategy", "no"),
        *("--val_questions", "1", "--val_max_new_tokens", "4"),
    ]
    output = train.run(load_recipe("smoke", overrides))

    saved = json.loads((output / "final" / "config.json").read_text(encoding="utf-8"))
    assert {key: saved[key] for key in SMALL_SHAPE} == SMALL_SHAPE
    assert saved["vocab_size"] == 151936 and saved["tie_word_embeddings"] is True
    card = json.loads((output / "run_card.json").read_text(encoding="utf-8"))
    assert card["global_step"] == 1 and math.isfinite(card["final"]["train_loss"])
    saved_tokenizer = AutoTokenizer.from_pretrained(
        output / "final"
    )  # the real Qwen3 one shipped with medsft
    assert saved_tokenizer.get_vocab() == qwen3_tokenizer.get_vocab()


def test_a_random_source_without_a_config_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="no config.json"):
        load_recipe("smoke", ["--model_name_or_path", f"random:{tmp_path / 'missing.json'}"])


def test_model_flops_count_every_parameter_once(small_config):
    from benchmarks.gpu_check import count_parameters, model_flops

    config = json.loads(small_config.read_text(encoding="utf-8"))
    parameters = sum(p.numel() for p in build_random_model(small_config).parameters())  # tied: counted once
    assert count_parameters(small_config) == parameters
    full = require_shared("models/Qwen3-1.7B-tokenizer/config.json")
    assert (
        count_parameters(full) == 1_720_574_976
    )  # Qwen3-1.7B: 28 blocks + the tied 151,936 x 2048 embedding
    attention = 12 * config["num_hidden_layers"] * config["num_attention_heads"] * config["head_dim"]
    assert model_flops([1], parameters, config) == 6 * parameters + attention
    assert model_flops([100, 3], parameters, config) == 6 * parameters * 103 + attention * (100**2 + 3**2)


@pytest.mark.slow
def test_gpu_check_dry_run_measures_and_writes_its_doc_section(tmp_path):
    require_shared("data/delicate_medical_r1_data/val.jsonl")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# before\n<!-- gpu_check:begin -->\nold\n<!-- gpu_check:end -->\nafter\n", encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--variants", "reference,medsft"]
        + ["--stages", "data", "--work", str(tmp_path / "work"), "--doc", str(doc)]
        + ["--json", str(tmp_path / "check.json")],
        cwd=REPO,
        env={**os.environ, "SWANLAB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads((tmp_path / "check.json").read_text(encoding="utf-8"))
    assert numbers["dry_run"] is True and numbers["device"] == "cpu"
    for variant in ("reference", "medsft"):
        row = numbers["speed"][variant]
        assert row["returncode"] == 0 and row["trained_tokens_per_s"] > 0 and row["mfu"] > 0
        assert len(row["losses"]) == 2 and all(math.isfinite(loss) for loss in row["losses"])
    assert [stage["name"] for stage in numbers["stages"]] == ["data"]
    assert numbers["stages"][0]["returncode"] == 0
    assert (tmp_path / "work" / "scale" / "rows" / "train.jsonl").is_file()
    skipped = " ".join(numbers["skipped"])
    assert "medsft-liger" in skipped and "vllm" in skipped.lower()  # no CUDA here: stated, not silent
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# before\n<!-- gpu_check:begin -->\n**Dry run on CPU") and "old" not in text
    assert text.endswith("<!-- gpu_check:end -->\nafter\n") and "| reference |" in text


def test_gpu_check_names_every_part_it_has_no_time_left_for(tmp_path):
    require_shared("data/delicate_medical_r1_data/val.jsonl")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--budget-s", "0"]
        + ["--work", str(tmp_path / "work"), "--json", str(tmp_path / "check.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads((tmp_path / "check.json").read_text(encoding="utf-8"))
    assert numbers["speed"] == {} and numbers["stages"] == []
    spent = ": time budget spent"
    budget_spent = [line.removesuffix(spent) for line in numbers["skipped"] if line.endswith(spent)]
    assert budget_spent == [
        *("speed reference", "speed medsft", "speed medsft-no-checkpointing", "speed medsft-padding-free"),
        *("data", "full_1epoch"),
        *("eval:full_1epoch", "infer:full_1epoch", "lora", "eval:lora", "infer:lora"),
    ]
    assert "**Skipped**: " in result.stdout and "No variant ran." in result.stdout
