"""GPU benchmark: the original recipe against medsft at the real Qwen3-1.7B shape (random init, bf16).

    python -m benchmarks.gpu_bench             # one GPU, about 5-8 minutes on an H200
    python -m benchmarks.gpu_bench --dry-run   # tiny width and depth on CPU: checks the script in minutes

The same side-by-side harness as `python -m benchmarks.bench` (paths take turns step by step; medsft's side is
the bench recipe through `load_recipe` and `build_trainer`, each lever that recipe with overrides), with the
model built from a config.json instead of the recipe's scaled-down one. Reports, per path, trained tokens/s,
the ratio to the original recipe, MFU and each path's own peak GPU memory.

MFU counts model FLOPs, not recomputation: per optimizer step

    6 * N * T  +  6 * n_layers * n_heads * head_dim * sum_i(s_i^2 / 2)

with N the parameters that multiply every token (decoder blocks + the output projection; the embedding lookup
is free; tied weights counted once, as the projection), T all tokens processed (prompt included) and s_i each
row's length (causal attention: QK^T and PV, 2 FLOPs per multiply-add, forward + backward = 3x, half the
square). It is divided by the step time and by the dense bf16 peak (989 TFLOP/s for an H200 SXM;
--peak-tflops).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import bench
from medsft.cli import run_command
from medsft.paths import shared_dir

H200_BF16_DENSE_TFLOPS = 989.0
GPU_LEVERS: dict[str, tuple[str, list[str]]] = {
    "medsft": bench.LEVERS["medsft"],
    "medsft-no-checkpointing": bench.LEVERS["medsft-no-checkpointing"],
    "medsft-padding-free": (
        "medsft with 4 rows per step as one padding-free row (position_ids), checkpointing",
        # TRL enforces no max_length without packing; every benchmark row fits 2048
        [
            *("--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1"),
            *("--padding_free", "true", "--max_length", "None"),
        ],
    ),
    "medsft-liger": (
        "medsft + Liger kernels for RMSNorm / SwiGLU / RoPE (the loss stays medsft's)",
        ["--use_liger_kernel", "true"],
    ),
}
DEFAULT_VARIANTS = "reference,medsft,medsft-padding-free,medsft-no-checkpointing,trl"


def model_factory_from_config(config_path: Path, tokenizer, device: str, seed: int = 0, shrink: bool = False):
    """Random-init Qwen3 from a config.json in a recipe's dtype, the same weights on every call (seeded)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    values = json.loads(config_path.read_text(encoding="utf-8"))
    if shrink:  # --dry-run: same architecture and vocabulary, tiny width and depth
        values.update(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4)
        values.update(num_key_value_heads=2, head_dim=16)
    values["vocab_size"] = max(values.get("vocab_size", 0), len(tokenizer))
    config = Qwen3Config(
        **{k: v for k, v in values.items() if k not in {"architectures", "transformers_version"}}
    )
    config.use_cache = False

    def factory(recipe) -> torch.nn.Module:
        torch.manual_seed(seed)
        with torch.device(device):
            return Qwen3ForCausalLM(config).to(getattr(torch, recipe.model.dtype))

    return factory, config


def flops_per_token_terms(config) -> tuple[float, float]:
    """(6·N, 6·n_layers·n_heads·head_dim): multiply the first by all tokens, the second by Σ s²."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_size = config.num_attention_heads * head_dim
    kv_size = config.num_key_value_heads * head_dim
    attention = config.hidden_size * (q_size + 2 * kv_size) + q_size * config.hidden_size
    mlp = 3 * config.hidden_size * config.intermediate_size
    params = config.num_hidden_layers * (attention + mlp) + config.vocab_size * config.hidden_size
    return 6.0 * params, 6.0 * config.num_hidden_layers * q_size


def efficiency_table(results: list[bench.PathResult], config, peak_tflops: float) -> tuple[str, dict]:
    """MFU and each path's own peak memory: its weights and optimizer state plus the most a step allocated."""
    per_token, per_square = flops_per_token_terms(config)
    lines = ["| path | MFU | model TFLOP/s | all tokens/s | peak memory (own) |", "|---|---:|---:|---:|---:|"]
    summary = {}
    for result in results:
        timed = result.step_lengths[1 : len(result.step_seconds)]
        all_tokens = sum(sum(step) for step in timed)
        flops = per_token * all_tokens + per_square * sum(s * s / 2 for step in timed for s in step)
        seconds = sum(result.step_seconds[1:])
        tflops = flops / seconds / 1e12 if seconds > 0 else float("nan")
        growth = result.step_memory_growth[1:] or result.step_memory_growth  # CUDA only
        peak = result.state_bytes + max(growth) if growth else None
        summary[result.name] = {"mfu": tflops / peak_tflops, "peak_memory_bytes": peak}
        lines.append(
            f"| {result.name} | {100 * tflops / peak_tflops:.1f} % | {tflops:.1f} | "
            f"{all_tokens / seconds if seconds > 0 else float('nan'):.0f} | "
            f"{f'{peak / 2**30:.2f} GiB' if peak is not None else 'not measured (no GPU)'} |"
        )
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_bench", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "--config", type=Path, default=shared_dir() / "models/Qwen3-1.7B-tokenizer/config.json"
    )
    parser.add_argument("--rows", type=int, default=96, help="real validation rows (default 96)")
    parser.add_argument("--steps", type=int, help="optimizer steps per path (default rows / 4)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"default {DEFAULT_VARIANTS}")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    parser.add_argument("--dry-run", action="store_true", help="tiny shape on CPU, 8 rows, 2 steps per path")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args, overrides = parser.parse_known_args(argv)

    if not torch.cuda.is_available() and not args.dry_run:
        raise bench.BenchError("no CUDA device; --dry-run checks the script on CPU.")
    if not args.config.is_file():
        raise bench.BenchError(f"{args.config} is missing: pass the model's config.json with --config.")
    if args.dry_run:
        args.rows, args.steps = min(args.rows, 8), 2
    args.steps = args.steps or max(2, args.rows // 4)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    try:
        import liger_kernel  # noqa: F401

        if device == "cuda" and "medsft-liger" not in names:
            names.append("medsft-liger")
    except ImportError:
        pass
    started = time.time()
    raw_rows = bench.read_rows(args.rows)
    with tempfile.TemporaryDirectory() as work:
        setup = bench.prepare(bench.BENCH_RECIPE, raw_rows, Path(work), args.steps, overrides)
        factory, config = model_factory_from_config(args.config, setup.tokenizer, device, shrink=args.dry_run)
        setup = dataclasses.replace(setup, new_model=factory)
        bench.log.info("%s, %d rows, %d steps per path: %s", device, len(raw_rows), args.steps, names)
        results = bench.run_training(bench.training_paths(setup, names, GPU_LEVERS))
    table, summary = bench.training_table(results, tail_steps=min(4, args.steps))
    efficiency, numbers = efficiency_table(results, config, args.peak_tflops)
    for name, values in numbers.items():
        summary[name].update(values)
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run, tiny shape)"
    command = f"python -m benchmarks.gpu_bench {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    report = (
        f"GPU benchmark, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {device_name}, "
        f"shape from {args.config.name} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocabulary {config.vocab_size}), random init, bf16, max_length {setup.base.sft.max_length}, "
        f"{len(raw_rows)} real rows, {args.steps} optimizer steps per path, taking turns step by step.\n\n"
        f"{table}\n\n{efficiency}\n\n"
        "Peak memory (own): the path's weights and optimizer state plus the most "
        "`torch.cuda.max_memory_allocated` grew within one of its steps (full-parameter training).\n\n"
        f"Versions: {bench.versions()}.  \nCommand: `{command}`"
    )
    print(report)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("gpu_bench", main, sys.argv[1:]))
