"""The GPU check's figures, on CPU: peak memory read during the training steps (through fake CUDA counters),
MFU with the output layer charged for what it computes, the attention kernel a random model is asked for, and
optional libraries imported only when used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import bench, gpu_check
from medsft import model as model_module
from medsft.model import build_random_model
from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[1]
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
    values = json.loads(require_shared("models/Qwen3-1.7B-tokenizer/config.json").read_text(encoding="utf-8"))
    values.update(SMALL_SHAPE)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


class FakeCuda:
    """torch.cuda's memory counters as the caching allocator keeps them, driven by hand."""

    def __init__(self, held: int):
        self.allocated = self.peak = held
        self.reserved = self.peak_reserved = held

    def allocate(self, size: int) -> None:
        self.allocated += size
        self.reserved = max(self.reserved, self.allocated)  # the cache keeps what it reserved
        self.peak = max(self.peak, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, size: int) -> None:
        self.allocated -= size

    def reset_peak_memory_stats(self) -> None:
        self.peak, self.peak_reserved = self.allocated, self.reserved

    def install(self, monkeypatch) -> None:
        for name, value in {
            "is_available": lambda: True,
            "synchronize": lambda: None,
            "reset_peak_memory_stats": self.reset_peak_memory_stats,
            "memory_allocated": lambda: self.allocated,
            "max_memory_allocated": lambda: self.peak,
            "max_memory_reserved": lambda: self.peak_reserved,
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_peak_memory_is_the_peak_of_the_training_steps_not_the_idle_one_after(monkeypatch):
    cuda = FakeCuda(held=1_000)
    cuda.install(monkeypatch)
    clock = bench.StepClock("medsft", bench.Turns(["medsft"]))
    clock.on_train_begin(None, None, None)
    for activations in (5_000, 9_000, 4_000):  # each step allocates its activations and frees them
        cuda.allocate(activations)
        cuda.free(activations)
        clock.on_step_end(None, None, None)
    clock.on_train_end(None, None, None)

    assert clock.step_peak_allocated == [6_000, 10_000, 5_000]
    assert clock.step_peak_reserved == [6_000, 10_000, 10_000]  # the cache never gives back
    assert torch.cuda.max_memory_allocated() == 1_000  # what a read after training would report
    result = SimpleNamespace(
        step_peak_allocated=clock.step_peak_allocated, step_peak_reserved=clock.step_peak_reserved
    )
    assert gpu_check.peak_memory(result) == {"peak_allocated_bytes": 10_000, "peak_reserved_bytes": 10_000}
    cpu = SimpleNamespace(step_peak_allocated=[], step_peak_reserved=[])
    assert gpu_check.peak_memory(cpu) == {"peak_allocated_bytes": None, "peak_reserved_bytes": None}


def test_the_output_layer_is_charged_for_the_positions_it_projects(small_config):
    config = json.loads(small_config.read_text(encoding="utf-8"))
    parameters = gpu_check.count_parameters(small_config)
    head = 6 * config["vocab_size"] * config["hidden_size"]
    palm = gpu_check.model_flops([100, 30], parameters, config)
    assert gpu_check.model_flops([100, 30], parameters, config, head_tokens=130) == palm
    assert gpu_check.model_flops([100, 30], parameters, config, head_tokens=40) == palm - head * 90
    assert {"reference"} == gpu_check.HEAD_ON_EVERY_POSITION  # the original projects every position


def test_a_random_model_runs_the_attention_kernel_it_is_asked_for(small_config, tmp_path):
    from medsft.recipe import load_recipe
    from medsft.train import load_model, load_tokenizer_and_model_dir

    assert (
        build_random_model(small_config, attn_implementation="eager").config._attn_implementation == "eager"
    )
    assert build_random_model(small_config).config._attn_implementation == "sdpa"  # transformers' default
    recipe = load_recipe(
        "smoke",
        [
            *("--model_name_or_path", f"random:{small_config}", "--attn_implementation", "eager"),
            *("--output_dir", str(tmp_path / "run")),
        ],
    )
    tokenizer, model_dir = load_tokenizer_and_model_dir(recipe)
    assert load_model(recipe, model_dir, tokenizer).config._attn_implementation == "eager"


def test_random_weights_are_the_same_for_a_seed_whatever_the_threads(small_config, monkeypatch):
    monkeypatch.setattr(model_module, "RANDOM_CHUNK_VALUES", 4096)  # many chunks even at this size
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = build_random_model(small_config, seed=5).state_dict()
        torch.set_num_threads(3)
        three = build_random_model(small_config, seed=5).state_dict()
    finally:
        torch.set_num_threads(threads)
    assert one.keys() == three.keys()
    assert all(torch.equal(one[name], three[name]) for name in one)
    embedding = one["model.embed_tokens.weight"].float()
    assert abs(embedding.std().item() - 0.02) < 0.002  # chunks are drawn alike: N(0, initializer_range)


@pytest.mark.slow
def test_a_run_that_reports_to_none_imports_no_tracker_and_no_eval_metric_library(smoke_data, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from medsft import evaluate, metrics, train
        from medsft.recipe import load_recipe

        overrides = ["--dataset", {str(smoke_data)!r}, "--output_dir", {str(tmp_path / "run")!r}]
        overrides += ["--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]
        overrides += ["--val_questions", "0", "--report_to", "none"]
        train.run(load_recipe("smoke", overrides))
        print(sorted(name for name in ("swanlab", "jieba", "rouge_chinese", "gradio") if name in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run" / "final" / "config.json").is_file()
