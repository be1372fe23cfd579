"""GPU benchmark: the original recipe against medsft at the real Qwen3-1.7B shape (random init, bf16).

    python benchmarks/gpu_bench.py             # one GPU, about 5-8 minutes on an H200
    python benchmarks/gpu_bench.py --dry-run   # tiny shape on CPU: checks the script's logic in a few minutes

Reports, per path, trained tokens/s (paths take turns step by step, first step excluded), the ratio to the
original recipe, MFU and peak allocated GPU memory (`torch.cuda.max_memory_allocated`), and writes them to
docs/benchmarks.md (section `gpu`) unless --no-record.

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
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from medsft import bench  # noqa: E402
from medsft.paths import shared_dir  # noqa: E402

H200_BF16_DENSE_TFLOPS = 989.0


def model_factory_from_config(config_path: Path, tokenizer, device: str, seed: int = 0, shrink: bool = False):
    """Random-init Qwen3 from a config.json, same weights on every call (seeded init on the target device)."""
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

    def factory(dtype: torch.dtype):
        torch.manual_seed(seed)
        with torch.device(device):
            model = Qwen3ForCausalLM(config).to(dtype)
        return model

    return factory, config


def flops_per_token_terms(config) -> tuple[float, float]:
    """(6·N, 6·n_layers·n_heads·head_dim): multiply the first by all tokens, the second by Σ s²."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_size = config.num_attention_heads * head_dim
    kv_size = config.num_key_value_heads * head_dim
    attention = config.hidden_size * (q_size + 2 * kv_size) + q_size * config.hidden_size
    mlp = 3 * config.hidden_size * config.intermediate_size
    per_layer = attention + mlp
    params = config.num_hidden_layers * per_layer + config.vocab_size * config.hidden_size
    return 6.0 * params, 6.0 * config.num_hidden_layers * q_size


def gpu_variants(liger: bool) -> dict[str, bench.Variant]:
    """The original recipe and medsft's GPU settings (bf16 weights as the recipes load them)."""
    common = {"bf16": True, "activation_checkpointing": True}
    variants = {
        "reference": bench.VARIANTS["reference"],
        "medsft": bench.Variant(
            "medsft",
            "FastSFTTrainer, bf16, batch 1 × accum 4, checkpointing (the recipes' full_1epoch settings)",
            bench.sft_trainer_builder("medsft", torch.bfloat16, **common),
        ),
        "medsft-padding-free": bench.Variant(
            "medsft-padding-free",
            "FastSFTTrainer, bf16, 4 rows as one padding-free row per step, checkpointing",
            bench.sft_trainer_builder(
                "medsft",
                torch.bfloat16,
                **{**common, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
                padding_free=True,
                max_length=None,  # TRL enforces no max_length without packing; every bench row fits 2048
            ),
        ),
        "medsft-no-checkpointing": bench.Variant(
            "medsft-no-checkpointing",
            "medsft without activation checkpointing (faster if memory allows)",
            bench.sft_trainer_builder(
                "medsft", torch.bfloat16, **{**common, "activation_checkpointing": False}
            ),
        ),
        "trl": bench.Variant(
            "trl",
            "TRL SFTTrainer out of the box, bf16, batch 1 × accum 4, checkpointing",
            bench.sft_trainer_builder("trl", torch.bfloat16, **common),
        ),
    }
    if liger:
        variants["medsft-liger"] = bench.Variant(
            "medsft-liger",
            "medsft + Liger kernels for RMSNorm / SwiGLU / RoPE (loss stays medsft's)",
            bench.sft_trainer_builder(
                "medsft",
                torch.bfloat16,
                **common,
                use_liger_kernel=True,
                liger_kernel_config={"rms_norm": True},
            ),
        )
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=shared_dir() / "models/Qwen3-1.7B-tokenizer/config.json"
    )
    parser.add_argument("--rows", type=int, default=96, help="real validation rows (default 96)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per segment (default rows / 4)"
    )
    parser.add_argument(
        "--variants", default="reference,medsft,medsft-padding-free,medsft-no-checkpointing,trl"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    parser.add_argument("--dry-run", action="store_true", help="tiny shape on CPU, 8 rows, 2 steps per path")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from medsft.model import load_tokenizer
    from medsft.paths import real_tokenizer_dir

    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.dry_run:
        print("gpu_bench: no CUDA device; use --dry-run to check the script on CPU.", file=sys.stderr)
        return 2
    if args.dry_run:
        args.rows, args.steps = min(args.rows, 8), 2
    args.steps = args.steps or max(2, args.rows // 4)
    tokenizer_dir = real_tokenizer_dir()
    if tokenizer_dir is None:
        print(f"gpu_bench: the Qwen3 tokenizer is missing under {shared_dir()}", file=sys.stderr)
        return 2
    tokenizer = load_tokenizer(tokenizer_dir)
    rows_path = shared_dir() / bench.VAL_ROWS
    raw_rows = [
        json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    raw_rows = raw_rows[: args.rows]
    factory, config = model_factory_from_config(args.config, tokenizer, device, shrink=args.dry_run)
    try:
        import liger_kernel  # noqa: F401

        liger = device == "cuda"
    except ImportError:
        liger = False
    variants = gpu_variants(liger)
    names = [n for n in args.variants.split(",") if n in variants]
    if liger and "medsft-liger" not in names:
        names.append("medsft-liger")
    bench.VARIANTS.update(variants)
    print(f"gpu_bench: {device}, {len(raw_rows)} rows, {args.steps} steps per path, {names}", flush=True)

    started = time.time()
    with tempfile.TemporaryDirectory() as work_dir:
        setup = bench.BenchSetup(
            tokenizer,
            raw_rows,
            factory,
            args.steps,
            args.learning_rate,
            args.max_length,
            Path(work_dir),
            device,
        )
        results = bench.run_training(setup, names, lambda text: print(text, flush=True))
    table, summary = bench.training_table(results, tail_steps=min(4, args.steps))
    per_token, per_square = flops_per_token_terms(config)
    mfu_lines = ["| path | MFU | model TFLOP/s | all tokens/s |", "|---|---:|---:|---:|"]
    for result in results:
        timed = result.step_lengths[1 : len(result.step_seconds)]
        all_tokens = sum(sum(step) for step in timed)
        flops = per_token * all_tokens + per_square * sum(s * s / 2 for step in timed for s in step)
        seconds = sum(result.step_seconds[1:])
        tflops = flops / seconds / 1e12 if seconds > 0 else float("nan")
        summary[result.variant]["mfu"] = tflops / args.peak_tflops
        mfu_lines.append(
            f"| {result.variant} | {100 * tflops / args.peak_tflops:.1f} % | {tflops:.1f} | "
            f"{all_tokens / seconds:.0f} |"
        )
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run, tiny shape)"
    report = (
        f"GPU benchmark, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {device_name}, "
        f"shape from {args.config.name} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocabulary {config.vocab_size}), random init, bf16, max_length {args.max_length}, "
        f"{len(raw_rows)} real rows, {args.steps} optimizer steps per path, taking turns step by step.\n\n"
        f"{table}\n\n{chr(10).join(mfu_lines)}\n\n"
        "Peak memory (own): the path's weights and AdamW state plus the most "
        "`torch.cuda.max_memory_allocated` grew within one of its steps (full-parameter training).\n\n"
        f"Versions: {bench.versions()}.  \nCommand: `python benchmarks/gpu_bench.py {' '.join(sys.argv[1:])}`"
    )
    print("\n" + report)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if not args.no_record and not args.dry_run:
        bench.record("gpu", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
