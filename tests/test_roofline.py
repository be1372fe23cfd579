"""The roofline of `make bench` at a tiny shape: every kernel timed, the floor their sum, fractions of it."""

from __future__ import annotations

import math
import re

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from benchmarks import roofline

SHAPE = roofline.StepShape(trained_tokens=12, row_tokens=16, rows_per_step=3)


def _tiny_model() -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=500,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(torch.bfloat16)


@pytest.fixture(scope="module")
def tiny_roofline() -> roofline.Roofline:
    return roofline.measure(_tiny_model(), SHAPE, repeats=2)


def test_a_checkpointed_model_is_refused():
    """Its forward would skip the graph and its backward hold the recomputation: both kernels mismeasured."""
    model = _tiny_model()
    model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="without activation checkpointing"):
        roofline.measure(model, SHAPE, repeats=1)


def test_every_kernel_of_a_step_is_timed_in_each_layout(tiny_roofline):
    names = [kernel.name for kernel in tiny_roofline.kernels]
    assert names == [
        "output layer: logits",
        "output layer: hidden-state gradient",
        "output layer: weight gradient",
        "softmax of the loss",
        "decoder: forward",
        "decoder: recomputation",
        "decoder: backward",
        "gradient accumulation",
        "optimizer step: clip, AdamW, zero",
    ]
    for kernel in tiny_roofline.kernels:
        assert kernel.layouts and all(seconds > 0 for seconds in kernel.layouts.values()), kernel.name
        assert kernel.best_seconds == min(kernel.layouts.values())
        assert kernel.step_seconds == pytest.approx(kernel.best_seconds * kernel.calls_per_step)
    calls = {kernel.name: kernel.calls_per_step for kernel in tiny_roofline.kernels}
    assert calls["output layer: logits"] == calls["decoder: backward"] == SHAPE.rows_per_step
    assert calls["gradient accumulation"] == SHAPE.rows_per_step - 1
    assert calls["optimizer step: clip, AdamW, zero"] == 1
    assert len(tiny_roofline.kernels[0].layouts) > 1  # the products are tried in several layouts


def test_floor_is_the_sum_of_the_kernels_and_fractions_divide_by_it(tiny_roofline):
    floor_seconds = sum(kernel.step_seconds for kernel in tiny_roofline.kernels)
    assert tiny_roofline.floor_step_seconds == pytest.approx(floor_seconds)
    assert tiny_roofline.floor_tokens_per_s == pytest.approx(SHAPE.step_trained_tokens / floor_seconds)

    measured = {
        "reference": tiny_roofline.floor_tokens_per_s / 4,
        "medsft": tiny_roofline.floor_tokens_per_s * 0.9,
    }
    table, summary = roofline.roofline_table(tiny_roofline, measured)
    assert summary["floor_step_seconds"] == pytest.approx(floor_seconds)
    assert summary["fraction_of_floor"] == pytest.approx({"reference": 0.25, "medsft": 0.9})
    assert sum(k["step_seconds"] for k in summary["kernels"]) == pytest.approx(floor_seconds)

    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| kernel")]
    kernel_rows, floor_row = rows[:-1], rows[-1]
    assert len(kernel_rows) == len(tiny_roofline.kernels)
    step_ms = [float(row.split("|")[6]) for row in kernel_rows]
    printed_floor = float(re.search(r"\*\*([\d.]+)\*\* \|", floor_row).group(1))
    assert printed_floor == pytest.approx(sum(step_ms), abs=0.1 * len(step_ms))
    printed_rate = float(re.search(r"\*\*([\d.]+) trained tokens/s\*\*", floor_row).group(1))
    assert printed_rate == pytest.approx(summary["floor_tokens_per_s"], abs=0.06)
    assert "`reference`" in table and "**25% of the floor**" in table and "**90% of the floor**" in table
    for kernel, row in zip(summary["kernels"], kernel_rows, strict=True):
        assert row.split("|")[3].strip() == kernel["best_layout"]
        if kernel["gflops"] is not None:
            assert math.isfinite(kernel["gflops"]) and kernel["gflops"] > 0


def test_time_layouts_takes_the_median_of_rounds_in_turns():
    order: list[str] = []
    own = iter([0.3, 0.1, 0.2, 0.5])  # a layout may time itself

    def layout(name: str, timed: bool):
        def run():
            order.append(name)
            return next(own) if timed else None

        return run

    seconds = roofline.time_layouts({"a": layout("a", True), "b": layout("b", False)}, repeats=3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert seconds["a"] == pytest.approx(0.2)  # median of 0.1, 0.2, 0.5 (0.3 was the warm-up)
    assert 0 <= seconds["b"] < 0.1


def test_the_mean_row_of_a_run():
    shape = roofline.shape_of_rows([400, 404], [100, 110, 120, 130, 100, 110, 120, 130], rows_per_step=4)
    assert shape == roofline.StepShape(trained_tokens=100, row_tokens=115, rows_per_step=4)
    assert shape.step_trained_tokens == 400
