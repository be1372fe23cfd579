"""Training speed at the real Qwen3-1.7B shape on this machine: the original recipe and medsft's recipe, each
in its own process, taking turns, and where one step's time goes against its floor.

    python -m benchmarks.real_shape                                   # reference vs medsft, 2 rounds, 12 rows
    python -m benchmarks.real_shape --variants reference,medsft,medsft-no-checkpointing --rounds 1
    python -m benchmarks.real_shape --layers 4 --rows 8 --rounds 1    # a quick look at real width, 4 layers

Each run is one process (a Qwen3-1.7B training process holds ~15-20 GiB; two would not fit a 24 GiB machine):
it builds the random Qwen3-1.7B weights from `$MEDSFT_SHARED/models/Qwen3-1.7B-tokenizer/config.json` (the
same seed, so the same weights in every run), takes the first `--rows` real rows of the data set and trains
them for rows / 4 optimizer steps with batch 1 x accumulation 4, as `full_1epoch` and the original train.py
do. `reference` is the original recipe (`benchmarks/original_recipe.py`); `medsft` is
`recipes/full_1epoch.yaml` exactly as `medsft train` loads it, with only what a timed CPU run must change
(`--use_cpu true`, the random model, no evaluation, saving or reporting, the rows in order); a lever is that
recipe with overrides (`benchmarks/bench.py`: `LEVERS`). Processes alternate (A B, then B A, ...), so load on
a shared machine hits both alike.

Reported per run: trained tokens/s over every step but the first (warm-up), the process's peak resident
memory (the kernel's high-water mark), and for the last step a profile (`benchmarks/step_profile.py`): each
kernel class's time forward, in recomputation and backward, next to its floor measured on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import AutoConfig, TrainerCallback

from benchmarks import bench, gpu_check, step_profile
from medsft.cli import run_command
from medsft.jsonl import write_json
from medsft.paths import shared_dir

RECIPE = "full_1epoch"
CONFIG = Path("models/Qwen3-1.7B-tokenizer/config.json")  # under $MEDSFT_SHARED
ROWS_PER_STEP = 4  # batch 1 x gradient accumulation 4, as full_1epoch and the original train
DEFAULT_VARIANTS = f"{bench.REFERENCE},medsft"
# What a timed CPU run changes in full_1epoch (the same values reach the original's TrainingArguments).
RUN_OVERRIDES = [
    "--logging_steps", "1",
    "--train_sampling_strategy", "sequential",
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--report_to", "none",
    "--disable_tqdm", "true",
    "--val_questions", "0",
]  # fmt: skip


class ProfileLastStep(TrainerCallback):
    def __init__(self, steps: int):
        self.steps = steps
        self.profiler: step_profile.StepProfiler | None = None
        self.breakdown: step_profile.StepBreakdown | None = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.steps - 1:
            self.profiler = step_profile.StepProfiler(model)
            self.profiler.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None:
            self.breakdown = self.profiler.stop()
            self.profiler = None


def child(variant: str, out: Path, config: Path, rows: int) -> int:
    """One run: train `variant` for rows / 4 steps, profile the last, write the numbers to `out`."""
    raw_rows = bench.read_rows(rows)
    steps = len(raw_rows) // ROWS_PER_STEP
    profiler = ProfileLastStep(steps)
    with tempfile.TemporaryDirectory() as work:
        overrides = ["--model_name_or_path", f"random:{config}", *RUN_OVERRIDES]
        setup = bench.prepare(RECIPE, raw_rows, Path(work), steps, overrides)
        [path] = bench.training_paths(setup, [variant])
        profiled = bench.TrainingPath(path.name, path.description, lambda cbs: path.build([*cbs, profiler]))
        [result] = bench.run_training([profiled])
    numbers = {
        "variant": variant,
        "description": result.description,
        "attention": result.attention,
        "trained_tokens_per_s": result.tokens_per_s(),
        "step_seconds": result.step_seconds,
        "trained_tokens_per_step": result.step_tokens,
        "row_lengths_per_step": result.step_lengths,
        "losses": result.losses,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "profile": profiler.breakdown.as_json() if profiler.breakdown else None,
    }
    write_json(out, numbers)
    return 0


def trimmed_config(config: Path, layers: int | None, work: Path) -> Path:
    if layers is None:
        return config
    values = json.loads(config.read_text(encoding="utf-8"))
    values["num_hidden_layers"] = layers
    if isinstance(values.get("layer_types"), list):
        values["layer_types"] = values["layer_types"][:layers]
    path = work / f"config_{layers}_layers.json"
    path.write_text(json.dumps(values, indent=1), encoding="utf-8")
    return path


def run_child(variant: str, config: Path, rows: int, work: Path, index: int) -> dict:
    out = work / f"run{index}_{variant}.json"
    command = [sys.executable, "-m", "benchmarks.real_shape", "--child", variant, "--out", str(out)]
    command += ["--config", str(config), "--rows", str(rows)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise bench.BenchError(f"{variant} failed:\n{completed.stderr[-3000:]}")
    numbers = json.loads(out.read_text(encoding="utf-8"))
    numbers["process_seconds"] = time.perf_counter() - started
    print(
        f"[real_shape] run {index} {variant}: {numbers['trained_tokens_per_s']:.2f} trained tokens/s, "
        f"peak RSS {numbers['peak_rss_bytes'] / 2**30:.2f} GiB",
        file=sys.stderr,
        flush=True,
    )
    return numbers


# ---------------------------------------------------------------- floors


def memory_bytes(config, tokens: int, loss_positions: int, parameters: int, recomputed: bool) -> dict:
    """The least memory traffic (bytes) of each elementwise class for one optimizer step (bf16 values)."""
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    q, kv = step_profile.projection_widths(config)
    passes = 2 if recomputed else 1
    two = 2  # bytes per bf16 value
    return {
        step_profile.RMSNORM: two * tokens * (layers * (2 * h + q + kv) + h) * (2 * passes + 3),
        step_profile.ROTARY: two * tokens * layers * (q + kv) * (2 * passes + 2),
        step_profile.SILU_GATE: two * tokens * layers * inter * (3 * passes + 5),
        step_profile.RESIDUAL: two * tokens * layers * h * 2 * 3 * passes,
        step_profile.EMBEDDING: two * tokens * h * 4,
        step_profile.LOSS: two * loss_positions * config.vocab_size * 4,  # softmax and its gradient in place
        step_profile.GRAD_ACCUMULATION: two * parameters * 3 * (ROWS_PER_STEP - 1),
        step_profile.OPTIMIZER: two * parameters * 8,  # AdamW reads p, g, m, v, writes p, m, v; clip reads g
    }


def floors(run: dict, config, speeds: dict, bandwidth: float, parameters: int) -> dict[str, float]:
    """Each class's floor for the profiled step of `run` (seconds)."""
    profile = run["profile"]
    lengths = run["row_lengths_per_step"][-1]
    trained = run["trained_tokens_per_step"][-1]
    classes = profile["classes"]
    recomputed = any(entry["seconds"].get("recompute", 0) > 0 for entry in classes.values())
    loss_positions = sum(lengths) if run["variant"] == bench.REFERENCE else trained
    result = {}
    for name, entry in classes.items():
        if name in (step_profile.ATTENTION_PRODUCTS, step_profile.MLP_PRODUCTS, step_profile.OUTPUT_PRODUCTS):
            seconds = 0.0
            for key, flops in entry["product_shapes"].items():
                shape, kind = key.split(" ", 1)
                kind = "forward" if kind == "recompute" else kind  # the same products again
                out_features, in_features = (int(size) for size in shape.split("x"))
                speed = speeds.get((out_features, in_features, kind))
                if speed is None:  # the output layer's products: its vocabulary block's speed
                    speed = speeds[(step_profile.VOCABULARY_BLOCK, config.hidden_size, kind)]
                seconds += flops / speed["flops_per_s"]
            result[name] = seconds
    attention = run["attention_isolated"]
    result[step_profile.ATTENTION_KERNEL] = (
        attention["forward"] * (2 if recomputed else 1) + attention["backward"]
    )
    for name, traffic in memory_bytes(config, sum(lengths), loss_positions, parameters, recomputed).items():
        result[name] = traffic / bandwidth
    result[step_profile.OTHER] = 0.0
    return result


def measure_floors(runs: list[dict], config) -> tuple[dict, float]:
    """Product speeds and copy bandwidth; each run gets its profiled step's sdpa timed alone."""
    h, inter = config.hidden_size, config.intermediate_size
    q, kv = step_profile.projection_widths(config)
    lengths = runs[-1]["row_lengths_per_step"][-1]
    mean_tokens = round(statistics.mean(lengths))
    shapes = sorted({(q, h), (kv, h), (h, q), (inter, h), (h, inter)})
    print(f"[real_shape] floors: products at {mean_tokens} tokens, attention, bandwidth", file=sys.stderr)
    speeds = step_profile.product_speeds([*shapes, (step_profile.VOCABULARY_BLOCK, h)], mean_tokens)
    bandwidth = step_profile.copy_bandwidth()
    attention = {}
    for run in runs:
        key = tuple(run["row_lengths_per_step"][-1])
        if key not in attention:
            attention[key] = step_profile.attention_seconds(config, list(key))
        run["attention_isolated"] = attention[key]
    return speeds, bandwidth


# ---------------------------------------------------------------- report


def gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def report(
    runs: list[dict], config_path: Path, args: argparse.Namespace, started: datetime
) -> tuple[str, dict]:
    reference = [run for run in runs if run["variant"] == bench.REFERENCE]
    lines = [
        "| run | variant | trained tokens/s | steps (s) | trained tokens per step | peak RSS |",
        "|---:|---|---:|---|---|---:|",
    ]
    for index, run in enumerate(runs, 1):
        steps = ", ".join(f"{seconds:.1f}" for seconds in run["step_seconds"])
        tokens = ", ".join(str(count) for count in run["trained_tokens_per_step"])
        lines.append(
            f"| {index} | {run['variant']} | {run['trained_tokens_per_s']:.2f} | {steps} | {tokens} | "
            f"{gib(run['peak_rss_bytes'])} |"
        )
    summary = [
        "",
        "| variant | mean trained tokens/s | ratio to reference | highest peak RSS |",
        "|---|---:|---:|---:|",
    ]
    base = statistics.mean(run["trained_tokens_per_s"] for run in reference) if reference else None
    for variant in args.variants:
        mine = [run for run in runs if run["variant"] == variant]
        rate = statistics.mean(run["trained_tokens_per_s"] for run in mine)
        ratio = f"{rate / base:.2f}x" if base else "–"
        summary.append(
            f"| {variant} | {rate:.2f} | {ratio} | {gib(max(run['peak_rss_bytes'] for run in mine))} |"
        )
    config = AutoConfig.from_pretrained(config_path)
    speeds, bandwidth = measure_floors(runs, config)
    parameters = gpu_check.count_parameters(config_path)
    last = {run["variant"]: run for run in runs}  # each variant's last run
    profile_lines = breakdown_table(last, config, speeds, bandwidth, parameters)
    mean_tokens = round(statistics.mean(runs[-1]["row_lengths_per_step"][-1]))
    speed_lines = [
        "",
        f"Floors: matrix products at their fastest layout's speed at {mean_tokens} tokens (bf16, TFLOP/s): "
        + "; ".join(
            f"{out}x{inp} {kind} {value['flops_per_s'] / 1e12:.2f} ({value['layout']})"
            for (out, inp, kind), value in speeds.items()
        )
        + f". Memory-bound classes at the copy bandwidth, {bandwidth / 1e9:.1f} GB/s (read + write).",
    ]
    minutes = (datetime.now(timezone.utc) - started).total_seconds() / 60
    text = "\n".join(
        [
            f"Run {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min: {len(runs)} processes, {args.rows} real "
            f"rows each ({args.rows // ROWS_PER_STEP} optimizer steps of batch 1 x accumulation 4; tokens/s "
            f"exclude the first step), shape from {config_path.name} with {config.num_hidden_layers} layers, "
            f"{parameters:,} parameters.",
            "",
            *lines,
            *summary,
            "",
            "Where the last step of each variant's last run went (`torch.profiler`, self time of each "
            "operation by kernel class; seconds) and the floor of that step's work on this machine:",
            "",
            *profile_lines,
            *speed_lines,
            "",
            f"Machine: {bench.machine()}, {platform.processor() or platform.machine()}.  ",
            f"Versions: {bench.versions()}.  ",
            f"Command: `{args.command}`",
        ]
    )
    return text, {
        "runs": runs,
        "bandwidth": bandwidth,
        "speeds": {" ".join(map(str, key)): value for key, value in speeds.items()},
    }


def breakdown_table(last: dict, config, speeds: dict, bandwidth: float, parameters: int) -> list[str]:
    names = list(last)
    header = "| kernel class | " + " | ".join(f"{name}: fwd / recompute / bwd" for name in names)
    header += " | " + " | ".join(f"{name} floor" for name in names) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(names))]
    floor_of = {name: floors(run, config, speeds, bandwidth, parameters) for name, run in last.items()}
    for kind in step_profile.CLASSES:
        cells = []
        for name in names:
            seconds = last[name]["profile"]["classes"][kind]["seconds"]
            forward = seconds.get("forward", 0.0)
            recompute = seconds.get("recompute", 0.0)
            backward = seconds.get("backward", 0.0) + seconds.get("step", 0.0)
            cells.append(f"{forward:.1f} / {recompute:.1f} / {backward:.1f}")
        cells += [f"{floor_of[name].get(kind, 0.0):.1f}" for name in names]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    totals, floor_totals = [], []
    for name in names:
        profile = last[name]["profile"]
        profiled = sum(sum(entry["seconds"].values()) for entry in profile["classes"].values())
        totals.append(f"**{profiled:.1f}** of {profile['wall_seconds']:.1f} s wall")
        floor = sum(floor_of[name].values())
        floor_totals.append(f"**{floor:.1f}** = {floor / profile['wall_seconds']:.0%} of the wall time")
    lines.append("| **step** | " + " | ".join(totals) + " | " + " | ".join(floor_totals) + " |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_shape", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma-separated ({DEFAULT_VARIANTS}); known: {', '.join([bench.REFERENCE, *bench.LEVERS])}",
    )
    parser.add_argument("--rows", type=int, default=12, help="real rows per run (12: 3 optimizer steps)")
    parser.add_argument("--rounds", type=int, default=2, help="times each variant runs, alternating (2)")
    parser.add_argument("--layers", type=int, help="keep only this many decoder layers (a quick look)")
    parser.add_argument("--config", type=Path, help="config.json (default: $MEDSFT_SHARED's Qwen3-1.7B)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if args.rows < 2 * ROWS_PER_STEP:
        parser.error(f"--rows must be at least {2 * ROWS_PER_STEP}: the first step is warm-up")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = args.config or shared_dir() / CONFIG
    if args.child:
        return child(args.child, args.out, config, args.rows)
    args.command = (
        f"python -m benchmarks.real_shape {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    )
    started = datetime.now(timezone.utc)
    runs = []
    with tempfile.TemporaryDirectory() as work:
        config = trimmed_config(config, args.layers, Path(work))
        for round_ in range(args.rounds):
            order = args.variants if round_ % 2 == 0 else args.variants[::-1]
            for variant in order:
                runs.append(run_child(variant, config, args.rows, Path(work), len(runs) + 1))
        text, raw = report(runs, config, args, started)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run_command("real-shape", main, sys.argv[1:]))
