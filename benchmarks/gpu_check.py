"""GPU acceptance check at the real Qwen3-1.7B shape: speed, the whole path and the vLLM backend, in one run.

    python -m benchmarks.gpu_check            # one CUDA GPU, within --budget-s (520 s: under 9 minutes)
    python -m benchmarks.gpu_check --dry-run  # the same script on CPU with a tiny shape: checks the plumbing
    python -m benchmarks.gpu_check --wheels output/gpu_bundle --out DIR   # on a bare CUDA image

No network. With --wheels (a folder `make gpu-bundle` wrote: benchmarks/gpu_bundle.py) it first installs, from
that folder only, what the image lacks into a throw-away venv that sees the image's packages, and runs there
with the bundle's inputs as $MEDSFT_SHARED. What the machine still lacks is skipped, and the report says so.

Parts, in this order, each measured in its own process (Liger's patch is process-wide), each given what is
left of the budget:

1. speed, side by side with the original recipe (`benchmarks/original_recipe.py`): `reference`, `medsft` as
   the recipes train (the bench recipe: bf16, batch 1 x 4, activation checkpointing), `medsft-padding-free`,
   and `medsft-liger` when liger-kernel is installed; random weights of the config's exact shape (`random:`),
   the same real rows and initial weights for each. Per variant: the attention kernel that ran, trained
   tokens/s, its ratio to the reference, MFU and the peak allocated and reserved GPU memory of the training
   steps (read at each step's end, `bench.StepClock`).
2. the scale check's stages (`benchmarks/scale_check.py`) with `--device cuda`: `medsft data`, `full_1epoch`
   and `lora` for 2 optimizer steps with their shipped recipes, `medsft eval` and `medsft infer` on each
   final/.
3. `medsft eval` and `medsft infer` with `--backend vllm` on full_1epoch's final/, when vLLM is installed.

MFU counts model FLOPs the standard way (PaLM, Chowdhery et al. 2022, appendix B): per trained row of s
tokens 6·N·s + 12·L·H·Q·s², N every parameter once (the tied embedding is the output projection), L layers,
H heads of size Q; causal masking is not discounted and recomputation is not counted. PaLM charges the output
layer at every position; medsft projects only the trained ones, so `mfu` charges it for those (what is
computed) and `palm_mfu` for all. Both are divided by the step time and by the GPU's dense bf16 peak
(--peak-tflops, default 989 for an H200).

Writes --json (default <--out>/gpu_check.json), the report as <--out>/gpu_check.md, and the part of
docs/benchmarks.md between `<!-- gpu_check:begin -->` and `<!-- gpu_check:end -->` (--doc; a dry run writes
no doc unless --doc is given).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from benchmarks import gpu_bundle, scale_check
from medsft.cli import run_command
from medsft.errors import MedsftError
from medsft.jsonl import write_json
from medsft.paths import output_dir, shared_dir

log = logging.getLogger("medsft.gpu_check")

H200_BF16_DENSE_TFLOPS = 989.0
SPEED_VARIANTS = ("reference", "medsft", "medsft-no-checkpointing", "medsft-padding-free")
# What the GPU compares beyond `make bench`'s levers; each variant trains in its own process.
GPU_LEVERS: dict[str, tuple[str, list[str]]] = {
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
LIGER_VARIANT = "medsft-liger"
PADDING_FREE_VARIANT = "medsft-padding-free"
# The original recipe's loss projects every position onto the vocabulary; medsft's only the trained ones.
HEAD_ON_EVERY_POSITION = {"reference"}
VLLM_STAGES = ("eval-vllm:full_1epoch", "infer-vllm:full_1epoch")
COMMAND_VARIABLE = "MEDSFT_GPU_CHECK_COMMAND"  # the command as typed, when run again from a bundle's venv
DOC_BEGIN, DOC_END = "<!-- gpu_check:begin -->", "<!-- gpu_check:end -->"
# Seconds a part needs at least on an H200 (process start, model build, a few steps); with less left it is
# skipped rather than started and killed.
LEAST_SECONDS = {"speed": 45, "data": 10, "train": 75, "eval": 40, "infer": 25, "vllm": 100}
DRY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def gpu_levers(cuda: bool) -> dict[str, tuple[str, list[str]]]:
    """GPU_LEVERS; the padding-free one on flash-attention's varlen kernel where flash-attn is installed
    (otherwise transformers' default, sdpa, which the report names)."""
    levers = dict(GPU_LEVERS)
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        description, overrides = levers[PADDING_FREE_VARIANT]
        levers[PADDING_FREE_VARIANT] = (
            f"{description}, flash-attention varlen",
            [*overrides, "--attn_implementation", "flash_attention_2"],
        )
    return levers


class GpuCheckError(MedsftError):
    """The check cannot run as asked: no GPU without --dry-run, a missing input, a doc without markers."""


# ---------------------------------------------------------------- one speed variant (its own process)


def count_parameters(config_path: Path) -> int:
    """Every parameter of the config's model once (tied weights once), counted on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_path))
    model.tie_weights()
    return sum(parameter.numel() for parameter in model.parameters())


def model_flops(lengths: list[int], parameters: int, config: dict, head_tokens: int | None = None) -> float:
    """PaLM's model FLOPs for training rows of these lengths: 6·N·s + 12·L·H·Q·s² each, except that the output
    layer's 6·V·h per token is charged for `head_tokens` positions (default: every one, PaLM's count)."""
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    tokens = sum(lengths)
    output_layer = 6.0 * config["vocab_size"] * config["hidden_size"]
    attention = sum(12.0 * layers * heads * head_dim * s * s for s in lengths)
    charged = tokens if head_tokens is None else head_tokens
    return 6.0 * parameters * tokens + attention + output_layer * (charged - tokens)


def peak_memory(result) -> dict:
    """The highest allocated and reserved GPU memory of any training step (None off CUDA), as each step's end
    read them: the counters are reset between steps, so what they read after training is the idle peak."""
    return {
        "peak_allocated_bytes": max(result.step_peak_allocated, default=None),
        "peak_reserved_bytes": max(result.step_peak_reserved, default=None),
    }


def speed_child(variant: str, out: Path, config: Path, rows: int, steps: int, peak_tflops: float) -> int:
    """Train one variant for `steps` optimizer steps with the benchmark harness; write its numbers."""
    import torch

    from benchmarks import bench

    levers = {**bench.LEVERS, **gpu_levers(torch.cuda.is_available())}
    raw_rows = bench.read_rows(rows)
    with tempfile.TemporaryDirectory() as work:
        overrides = ["--model_name_or_path", f"random:{config}"]
        setup = bench.prepare(bench.BENCH_RECIPE, raw_rows, Path(work), steps, overrides)
        [result] = bench.run_training(bench.training_paths(setup, [variant], levers))
    timed = result.step_lengths[1 : len(result.step_seconds)]  # the first step is warm-up
    seconds = sum(result.step_seconds[1:])
    lengths = [s for step in timed for s in step]
    trained = sum(result.step_tokens[1 : len(result.step_seconds)])
    shape = json.loads(config.read_text(encoding="utf-8"))
    parameters = count_parameters(config)
    every_position = model_flops(lengths, parameters, shape)  # PaLM's count: the output layer everywhere
    computed = (
        every_position
        if variant in HEAD_ON_EVERY_POSITION
        else model_flops(lengths, parameters, shape, trained)
    )
    cuda = torch.cuda.is_available()
    per_second = (lambda flops: flops / seconds / 1e12) if seconds else (lambda flops: None)
    numbers = {
        "variant": variant,
        "description": result.description,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "attention": result.attention,
        "trained_tokens_per_s": result.tokens_per_s(),
        "all_tokens_per_s": sum(lengths) / seconds if seconds else None,
        "model_tflops_per_s": per_second(computed),
        "mfu": per_second(computed) / peak_tflops if seconds else None,
        "palm_model_tflops_per_s": per_second(every_position),
        "palm_mfu": per_second(every_position) / peak_tflops if seconds else None,
        **peak_memory(result),
        "step_seconds": result.step_seconds,
        "trained_tokens_per_step": result.step_tokens,
        "losses": result.losses,
    }
    write_json(out, numbers)
    return 0


# ---------------------------------------------------------------- the parent: parts within a budget


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def dry_config(work: Path, config: Path) -> Path:
    """The config's architecture and vocabulary at a tiny width and depth (--dry-run)."""
    values = json.loads(config.read_text(encoding="utf-8"))
    values.update(DRY_SHAPE)
    path = work / "dry_config.json"
    path.write_text(json.dumps(values, indent=1), encoding="utf-8")
    return path


def vllm_python() -> Path | None:
    """The python that has vLLM: this one, or that of vLLM's own environment (make setup-vllm)."""
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    own = Path(os.environ.get("VLLM_VENV", ".venv-vllm")) / "bin" / "python"
    if own.is_file():
        check = subprocess.run([str(own), "-c", "import vllm"], capture_output=True, timeout=300)
        if check.returncode == 0:
            return own.absolute()
    return None


def stage_kind(name: str) -> str:
    if "vllm" in name:
        return "vllm"
    return name.split(":")[0] if ":" in name else ("data" if name == "data" else "train")


def run_speed(args, config: Path, work: Path, variants: list[str], budget: Budget, skipped: list[str]):
    results = {}
    for variant in variants:
        if budget.left() < LEAST_SECONDS["speed"]:
            skipped.append(f"speed {variant}: time budget spent")
            continue
        out = work / f"speed_{variant}.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "benchmarks.gpu_check", "--speed-child", variant, str(out)]
        command += ["--config", str(config), "--rows", str(args.rows), "--steps", str(args.steps)]
        command += ["--peak-tflops", str(args.peak_tflops)]
        stage = scale_check.run_stage(
            f"speed {variant}", command, work / "logs" / f"speed_{variant}.log", budget.left()
        )
        numbers = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        results[variant] = {**numbers, "returncode": stage.returncode, "wall_s": stage.wall_s}
        results[variant]["timed_out"] = stage.timed_out
        results[variant]["log_file"] = stage.log_file
    return results


def run_stages(args, config: Path, work: Path, names: list[str], budget: Budget, skipped: list[str]):
    vllm = ["--vllm-python", str(args.vllm_python)] if args.vllm_python else []
    stage_args = scale_check.parse_args(
        [
            *("--config", str(config), "--steps", "1" if args.dry_run else "2"),
            *("--device", args.device, "--work", str(work / "scale"), *vllm),
            "--save-only-model",  # time goes to training, not to writing AdamW's state
        ]
    )
    commands = scale_check.stage_commands(stage_args, work / "scale")
    (work / "scale" / "logs").mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        if budget.left() < LEAST_SECONDS[stage_kind(name)]:
            skipped.append(f"{name}: time budget spent")
            continue
        results.append(scale_check.run_named_stage(name, commands, work / "scale", budget.left(), False))
    return results, stage_args


# ---------------------------------------------------------------- the report


def speed_table(speed: dict) -> str:
    reference = speed.get("reference", {}).get("trained_tokens_per_s")
    lines = [
        "| variant | attention | trained tokens/s | × reference | all tokens/s | model TFLOP/s | MFU "
        "| MFU (PaLM) | peak allocated | peak reserved | loss: first, last |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def number(value, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    def percent(value) -> str:
        return number(value * 100 if value is not None else None, ".1f")

    for variant, row in speed.items():
        if row.get("returncode"):
            why = (
                "stopped at the time budget" if row.get("timed_out") else f"failed (exit {row['returncode']})"
            )
            lines.append(f"| {variant} | **{why}**, log {row['log_file']} |")
            continue
        rate = row.get("trained_tokens_per_s")
        ratio = rate / reference if rate and reference else None
        losses = row.get("losses") or []
        loss = f"{losses[0]:.3f}, {losses[-1]:.3f}" if losses else "–"
        lines.append(
            f"| {variant} | {row.get('attention') or '–'} | {number(rate, '.0f')} | "
            f"{number(ratio, '.2f')}× | {number(row.get('all_tokens_per_s'), '.0f')} | "
            f"{number(row.get('model_tflops_per_s'), '.1f')} | {percent(row.get('mfu'))} % | "
            f"{percent(row.get('palm_mfu'))} % | "
            f"{scale_check.gib(row.get('peak_allocated_bytes'))} | "
            f"{scale_check.gib(row.get('peak_reserved_bytes'))} | {loss} |"
        )
    return "\n".join(lines)


def versions(vllm: Path | None) -> str:
    names = ["torch", "transformers", "trl", "accelerate", "peft", "liger-kernel"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    if vllm is None:
        found.append("vllm not installed")
    else:
        ask = (
            "from importlib.metadata import version as v; print('vllm', v('vllm'), 'with torch', v('torch'))"
        )
        answer = subprocess.run([str(vllm), "-c", ask], capture_output=True, text=True, timeout=120)
        found.append(f"{answer.stdout.strip()} ({vllm})")
    return f"python {platform.python_version()}, " + ", ".join(found)


def markdown(args, speed: dict, stages, stage_args, skipped: list[str], started: float, command: str) -> str:
    device = next((row["device"] for row in speed.values() if row.get("device")), args.device)
    title = (
        "**Dry run on CPU with a tiny shape: it checks the script; its numbers mean nothing.**\n\n"
        if args.dry_run
        else ""
    )
    scale_part = scale_check.report(stages, stage_args, started, command) if stages else "No stage ran."
    return "\n".join(
        [
            f"{title}GPU check, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {device}, "
            f"{(time.time() - started) / 60:.1f} min. Shape: {args.config}"
            f"{' shrunk to ' + json.dumps(DRY_SHAPE) if args.dry_run else ''}.",
            "",
            f"**Speed** ({args.rows} real rows, {args.steps} optimizer steps per variant, each variant in "
            "its own process; tokens/s and MFU exclude the first step; MFU against "
            f"{args.peak_tflops:g} TFLOP/s)",
            "",
            speed_table(speed) if speed else "No variant ran.",
            "",
            "**Whole path** (scale check stages; the last line is its command, run by this script)",
            "",
            scale_part,
            "",
            "**Skipped**: " + ("; ".join(skipped) if skipped else "nothing") + ".",
            "",
            f"Versions: {versions(args.vllm_python)}.  ",
            f"Command: `{command}`",
        ]
    )


def write_doc_section(doc: Path, text: str) -> None:
    content = doc.read_text(encoding="utf-8")
    if content.count(DOC_BEGIN) != 1 or content.count(DOC_END) != 1:
        raise GpuCheckError(f"{doc} needs one {DOC_BEGIN} … {DOC_END} pair to write the section between.")
    head, rest = content.split(DOC_BEGIN)
    _, tail = rest.split(DOC_END)
    doc.write_text(f"{head}{DOC_BEGIN}\n{text}\n{DOC_END}{tail}", encoding="utf-8")


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny shape, 8 rows, 2 steps, 1 per recipe"
    )
    parser.add_argument("--config", type=Path, default=shared_dir() / scale_check.CONFIG)
    parser.add_argument("--rows", type=int, default=48, help="real rows for the speed part (48)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per speed variant (12)")
    parser.add_argument(
        "--variants", default=",".join(SPEED_VARIANTS), help="speed variants (+ Liger if there)"
    )
    parser.add_argument("--stages", default=scale_check.DEFAULT_STAGES, help="scale check stages")
    parser.add_argument(
        "--budget-s", type=float, help="seconds for everything (520 on a GPU; 3600 for a dry run on CPU)"
    )
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    parser.add_argument(
        "--out", "--work", dest="work", type=Path, help="default: $MEDSFT_OUTPUT_DIR/gpu_check"
    )
    parser.add_argument(
        "--wheels", type=Path, help="a bundle from `make gpu-bundle`: install from it (no index) and run"
    )
    parser.add_argument("--json", type=Path, help="default: <work>/gpu_check.json")
    parser.add_argument(
        "--doc", type=Path, help="doc to write the section into (default: docs/benchmarks.md)"
    )
    return parser.parse_args(argv)


def without_option(argv: list[str], option: str) -> list[str]:
    """argv less `option VALUE` and `option=VALUE`."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            kept.append(item)
    return kept


def budget_seconds(args: argparse.Namespace) -> float:
    return args.budget_s if args.budget_s is not None else (3600.0 if args.dry_run else 520.0)


def run_from_bundle(args: argparse.Namespace, argv: list[str]) -> int:
    """This check, run again by the python of a throw-away venv holding the bundle's wheels, with the bundle's
    inputs as $MEDSFT_SHARED and the budget less the install's time; the venv is removed afterwards."""
    started = time.monotonic()
    bundle = args.wheels.absolute()
    repository = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="medsft-gpu-check-") as folder:
        python = gpu_bundle.install(bundle, Path(folder) / "venv")
        paths = [str(repository), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "MEDSFT_SHARED": str(bundle / "shared"), "PYTHONPATH": os.pathsep.join(paths)}
        env[COMMAND_VARIABLE] = shlex.join(["python", "-m", "benchmarks.gpu_check", *argv])  # as typed
        left = budget_seconds(args) - (time.monotonic() - started)
        rest = without_option(without_option(argv, "--wheels"), "--budget-s")
        command = [str(python), "-m", "benchmarks.gpu_check", *rest, "--budget-s", f"{left:.0f}"]
        log.info("running from %s: %s", bundle, shlex.join(command))
        return subprocess.run(command, cwd=repository, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--speed-child"]:
        variant, out, *rest = argv[1:]
        child = parse_args(rest)
        return speed_child(variant, Path(out), child.config, child.rows, child.steps, child.peak_tflops)
    args = parse_args(argv)
    if args.wheels is not None:
        return run_from_bundle(args, argv)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "VLLM_NO_USAGE_STATS"):
        os.environ[variable] = "1"  # no network: every process it starts works from local files
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        raise GpuCheckError("no CUDA device: run it on a GPU machine, or check the script with --dry-run.")
    for path in (args.config, shared_dir() / scale_check.ROWS):
        if not path.is_file():
            raise GpuCheckError(f"{path} is missing: set MEDSFT_SHARED to the folder with the shared inputs.")
    budget = Budget(budget_seconds(args))
    started = time.time()
    work = (args.work or output_dir() / "gpu_check").absolute()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    args.device = "cuda" if cuda else "cpu"
    if args.dry_run:
        args.config = dry_config(work, args.config)
        args.rows, args.steps = min(args.rows, 8), 2
    skipped: list[str] = []
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if importlib.util.find_spec("liger_kernel") is None:
        skipped.append(f"speed {LIGER_VARIANT}: liger-kernel is not installed")
    elif not cuda:
        skipped.append(f"speed {LIGER_VARIANT}: no CUDA (its kernels are Triton)")
    elif LIGER_VARIANT not in variants:
        variants.append(LIGER_VARIANT)
    stages = [name.strip() for name in args.stages.split(",") if name.strip()]
    if importlib.util.find_spec("jieba") is None or importlib.util.find_spec("rouge_chinese") is None:
        evals = [name for name in stages if name.startswith("eval:")]
        if evals:
            skipped.append(
                f"{', '.join(evals)}: jieba / rouge-chinese are not installed (eval's ROUGE-L; a bundle "
                "carries them with `python -m benchmarks.gpu_bundle --with-eval-metrics`)"
            )
        stages = [name for name in stages if name not in evals]
    args.vllm_python = vllm_python()
    if args.vllm_python is None:
        skipped.append(f"{', '.join(VLLM_STAGES)}: vLLM is not installed (make setup-vllm)")
    elif not cuda:
        skipped.append(f"{', '.join(VLLM_STAGES)}: no CUDA")
    else:
        stages += [name for name in VLLM_STAGES if name not in stages]

    speed = run_speed(args, args.config, work, variants, budget, skipped)
    stage_results, stage_args = run_stages(args, args.config, work, stages, budget, skipped)
    command = os.environ.get(COMMAND_VARIABLE) or shlex.join(["python", "-m", "benchmarks.gpu_check", *argv])
    text = markdown(args, speed, stage_results, stage_args, skipped, started, command)
    print(text)
    results = {
        "dry_run": args.dry_run,
        "device": args.device,
        "config": str(args.config),
        "speed": speed,
        "stages": [asdict(result) for result in stage_results],
        "skipped": skipped,
        "versions": versions(args.vllm_python),
        "command": command,
        "wall_s": round(time.time() - started, 1),
    }
    write_json(args.json or work / "gpu_check.json", results)
    (work / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
    doc = args.doc or (None if args.dry_run else Path("docs/benchmarks.md"))
    if doc is not None:
        write_doc_section(doc, text)
    parts = [(f"speed {v}", row["returncode"], row["timed_out"]) for v, row in speed.items()]
    parts += [(result.name, result.returncode, result.timed_out) for result in stage_results]
    failed = [name for name, code, timed_out in parts if code and not timed_out]
    stopped = [name for name, code, timed_out in parts if timed_out]
    if failed or stopped:
        raise GpuCheckError(
            f"failed: {', '.join(failed) or 'none'}; stopped at the time budget: "
            f"{', '.join(stopped) or 'none'} (logs under {work})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_command("gpu_check", main, sys.argv[1:]))
