"""The real-shape benchmark's step profile: every product lands in its kernel class with the FLOPs the
architecture implies (forward, recomputation, both gradients), and the side-by-side driver runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from benchmarks import step_profile
from medsft.paths import shared_dir

TINY = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 512,
    "tie_word_embeddings": True,
}
TOKENS = 37  # none of the model's sizes, so a weight gradient (which contracts over the tokens) is told apart


def tiny_model() -> torch.nn.Module:
    config = AutoConfig.for_model("qwen3", **TINY)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def profiled_step(model: torch.nn.Module, checkpointing: bool) -> step_profile.StepBreakdown:
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, TINY["vocab_size"], (1, TOKENS), generator=torch.Generator().manual_seed(1))
    profiler = step_profile.StepProfiler(model)
    profiler.start()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return profiler.stop()


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_products_are_classed_with_the_flops_the_architecture_implies(checkpointing):
    breakdown = profiled_step(tiny_model(), checkpointing)
    h, inter, layers = TINY["hidden_size"], TINY["intermediate_size"], TINY["num_hidden_layers"]
    q = TINY["num_attention_heads"] * TINY["head_dim"]
    kv = TINY["num_key_value_heads"] * TINY["head_dim"]
    passes = {"forward": 1, "input gradient": 1, "weight gradient": 1}
    if checkpointing:
        passes["recompute"] = 1

    def expected(weights: list[tuple[int, int]]) -> dict[tuple[int, int, str], float]:
        flops: dict[tuple[int, int, str], float] = {}
        for out_features, in_features in weights:
            for kind, count in passes.items():
                key = (out_features, in_features, kind)
                flops[key] = flops.get(key, 0.0) + count * 2.0 * TOKENS * out_features * in_features * layers
        return flops

    mlp = breakdown.classes[step_profile.MLP_PRODUCTS]
    attention = breakdown.classes[step_profile.ATTENTION_PRODUCTS]
    assert dict(mlp.product_shapes) == expected([(inter, h), (inter, h), (h, inter)])
    assert dict(attention.product_shapes) == expected([(q, h), (kv, h), (kv, h), (h, q)])
    vocab = TINY["vocab_size"]
    output = breakdown.classes[step_profile.OUTPUT_PRODUCTS]  # the tied output layer: never recomputed
    assert output.flops == pytest.approx(3 * 2.0 * TOKENS * h * vocab)
    for kind in (step_profile.MLP_PRODUCTS, step_profile.RMSNORM, step_profile.ATTENTION_KERNEL):
        seconds = breakdown.classes[kind].seconds
        assert seconds["forward"] > 0 and seconds["backward"] > 0, kind
        assert (seconds.get("recompute", 0) > 0) == checkpointing, kind
    assert breakdown.classes[step_profile.OPTIMIZER].total > 0
    assert breakdown.classes[step_profile.LOSS].seconds["backward"] > 0  # the loss's own backward
    assert 0 < breakdown.profiled_seconds <= breakdown.wall_seconds


@pytest.mark.slow
def test_side_by_side_driver_reports_both_paths_and_their_floors(tmp_path):
    if not (shared_dir() / "data/delicate_medical_r1_data/val.jsonl").is_file():
        pytest.skip("needs the real rows under $MEDSFT_SHARED")
    config = tmp_path / "config.json"
    base = json.loads((shared_dir() / "models/Qwen3-1.7B-tokenizer/config.json").read_text(encoding="utf-8"))
    base.update({key: value for key, value in TINY.items() if key != "vocab_size"})
    config.write_text(json.dumps(base), encoding="utf-8")
    command = [sys.executable, "-m", "benchmarks.real_shape", "--config", str(config), "--rows", "8"]
    command += ["--rounds", "1", "--json", str(tmp_path / "runs.json")]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parent.parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    assert "| reference | " in report and "| medsft | " in report and "ratio to reference" in report
    assert "| MLP projections gate, up, down |" in report and "of the wall time" in report
    runs = json.loads((tmp_path / "runs.json").read_text(encoding="utf-8"))["runs"]
    assert [run["variant"] for run in runs] == ["reference", "medsft"]
    for run in runs:
        assert len(run["step_seconds"]) == 2 and run["trained_tokens_per_s"] > 0
        assert run["peak_rss_bytes"] > 0 and run["profile"]["wall_seconds"] > 0
    # both paths trained the same rows (their templates differ by a few tokens a row)
    reference_tokens, medsft_tokens = runs[0]["trained_tokens_per_step"], runs[1]["trained_tokens_per_step"]
    for reference, medsft in zip(reference_tokens, medsft_tokens, strict=True):
        assert abs(reference - medsft) <= 0.01 * medsft
