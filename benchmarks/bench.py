"""Training and generation speed of medsft against the original recipe, side by side.

    python -m benchmarks.bench                       # make bench (runtimes: docs/benchmarks.md)
    python -m benchmarks.bench --rows 8 --steps 3 --gen-questions 2 --gen-tokens 8 --repeats 1  # quick check
    python -m benchmarks.bench --tiny_num_layers 8   # a flag it does not know overrides the bench recipe
    python -m benchmarks.bench --threads 1           # one torch thread, where other work holds a core

Training: the original Qwen3-Medical-SFT path (benchmarks/original_recipe.py) and medsft's path train the same
random-init model on the same real rows in the same order. medsft's side is built as `medsft train` builds it:
recipes/bench.yaml through `load_recipe`, then `load_model`, `load_data` and `build_trainer`; a lever is that
recipe with overrides (`medsft-no-checkpointing`: `--activation_checkpointing false`). The paths live in one
process, each trainer in its own thread, and take turns one optimizer step at a time, the order reversed every
round (A B, B A, ...), so a load change on a shared machine hits them alike. Per path: trained tokens per
second after the first (warm-up) step, the ratio to the original three ways (total wall time, median of the
per-step pairs, CPU time of the process while the path held its turn), and the loss.

Roofline (after training, `benchmarks/roofline.py`): every kernel of the bench recipe's optimizer step timed
in its fastest layout at the mean row medsft trained; their sum is the step's floor, and each path's trained
tokens/s is reported as a fraction of it.

Generation: medsft's batched `Generator.generate` against the original one-question-at-a-time loop, same model
and questions, greedy, in alternating runs.

The report (markdown) goes to stdout, progress to stderr; --json writes the per-step numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback

from benchmarks import original_recipe, roofline
from medsft.chat_format import prompt_messages
from medsft.cli import run_command
from medsft.conversion import convert_row
from medsft.errors import MedsftError
from medsft.jsonl import read_jsonl, write_jsonl
from medsft.paths import shared_dir
from medsft.recipe import Recipe, load_recipe
from medsft.train import build_trainer, load_data, load_model, load_tokenizer_and_model_dir

log = logging.getLogger("medsft.bench")

BENCH_RECIPE = "bench"
ROWS_FILE = Path("data/delicate_medical_r1_data/val.jsonl")  # under $MEDSFT_SHARED: real raw rows
# What a timed run changes, as the bench recipe states it; the original's path gets the same values.
RUN_SETTINGS = (
    "logging_steps",
    "save_strategy",
    "eval_strategy",
    "report_to",
    "train_sampling_strategy",
    "disable_tqdm",
    "use_cpu",
)
# medsft's levers: the bench recipe with these overrides (the recipe itself is the `medsft` path).
LEVERS: dict[str, tuple[str, list[str]]] = {
    "medsft": ("medsft as the recipes train: activation checkpointing on", []),
    "medsft-no-checkpointing": (
        "medsft without activation checkpointing",
        ["--activation_checkpointing", "false"],
    ),
    "medsft-batch4": (
        "medsft with batch 4 x accumulation 1 (padded)",
        ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1"],
    ),
    "medsft-fp32": ("medsft with fp32 weights, no bf16 autocast", ["--dtype", "float32", "--bf16", "false"]),
    "medsft-no-autocast": ("medsft with bf16 weights and no bf16 autocast", ["--bf16", "false"]),
}
REFERENCE = "reference"
TRL = "trl"
DEFAULT_VARIANTS = "reference,medsft,medsft-no-checkpointing"


class BenchError(MedsftError):
    """The benchmark cannot run as asked: a missing input, an unknown path name."""


# ---------------------------------------------------------------- taking turns


class Turns:
    """Training threads take turns, one optimizer step each; the order reverses every round (A B, B A ...)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.taken = 0
        self.finished: set[str] = set()
        self.condition = threading.Condition()

    def _holder(self) -> str:
        round_, position = divmod(self.taken, len(self.names))
        return (self.names if round_ % 2 == 0 else self.names[::-1])[position]

    def wait(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self._holder() == name)

    def done(self, name: str, finished: bool = False) -> None:
        with self.condition:
            if finished:
                self.finished.add(name)
            if self._holder() == name and len(self.finished) < len(self.names):
                self.taken += 1
                while self._holder() in self.finished:
                    self.taken += 1
            self.condition.notify_all()


class StepClock(TrainerCallback):
    """Holds the path's turn from one optimizer step's end to the next's and times it: wall and CPU seconds,
    the logged loss, and on CUDA the step's peak allocated and reserved memory and how far allocation grew
    within it. The peaks are read at each step's end, before the counters are reset for the next step: read
    after training, they would be the idle process's."""

    def __init__(self, name: str, turns: Turns):
        self.name, self.turns = name, turns
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []
        self.step_memory_growth: list[int] = []
        self.step_peak_allocated: list[int] = []
        self.step_peak_reserved: list[int] = []
        self.losses: list[float] = []
        self._start = self._cpu_start = 0.0
        self._allocated = 0

    def _begin(self) -> None:
        self.turns.wait(self.name)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._allocated = torch.cuda.memory_allocated()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_begin(self, args, state, control, **kwargs):
        self._begin()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            self.step_peak_allocated.append(peak)
            self.step_peak_reserved.append(torch.cuda.max_memory_reserved())
            self.step_memory_growth.append(peak - self._allocated)
        self.step_seconds.append(time.perf_counter() - self._start)
        self.step_cpu_seconds.append(time.process_time() - self._cpu_start)
        self.turns.done(self.name)
        self._begin()

    def on_train_end(self, args, state, control, **kwargs):
        self.turns.done(self.name, finished=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


# ---------------------------------------------------------------- the training paths


@dataclass
class TrainingPath:
    name: str
    description: str
    build: Callable[[list], object]  # callbacks -> a trainer around a fresh copy of the benchmark model


@dataclass
class PathResult:
    name: str
    description: str
    step_tokens: list[
        int
    ]  # trained (next-token) positions per optimizer step, counted by the path's collator
    step_lengths: list[list[int]]  # every row's token count (prompt included), per step
    step_seconds: list[float]
    step_cpu_seconds: list[float]
    losses: list[float]
    state_bytes: int  # weights + optimizer state after training
    step_memory_growth: list[int] = field(default_factory=list)  # CUDA only
    step_peak_allocated: list[int] = field(default_factory=list)  # CUDA only: each step's own peak
    step_peak_reserved: list[int] = field(default_factory=list)
    attention: str | None = None  # the attention kernel the model ran (config._attn_implementation)

    def tokens_per_s(self, cpu: bool = False) -> float:
        """Trained tokens per second over every step but the first (warm-up)."""
        seconds = (self.step_cpu_seconds if cpu else self.step_seconds)[1:]
        tokens = self.step_tokens[1 : 1 + len(seconds)]
        return sum(tokens) / sum(seconds) if sum(seconds) > 0 else float("nan")

    def step_rates(self) -> list[float]:
        return [t / s for t, s in zip(self.step_tokens[1:], self.step_seconds[1:], strict=False)]


@dataclass
class BenchSetup:
    """What the paths of one run share: the real rows, the tokenizer, the model's initial weights, and the
    bench recipe as loaded for each path."""

    raw_rows: list[dict]
    tokenizer: object
    base: Recipe  # the bench recipe with the run's overrides (no lever)
    load: Callable[[str, list[str]], Recipe]  # (path name, lever overrides) -> that path's recipe
    new_model: Callable[[Recipe], torch.nn.Module]  # a fresh model as a recipe loads it, same initial weights


def prepare(recipe: str, raw_rows: list[dict], work: Path, steps: int, overrides: list[str]) -> BenchSetup:
    """The rows as `medsft data` writes them (into `work`), the recipe per path, the model as it builds it."""
    rows_dir = work / "rows"
    write_jsonl(rows_dir / "train.jsonl", [{"messages": convert_row(row)} for row in raw_rows])
    device = [] if torch.cuda.is_available() else ["--use_cpu", "true"]

    def load(name: str, lever: list[str]) -> Recipe:
        where = ["--dataset", str(rows_dir), "--output_dir", str(work / name), "--max_steps", str(steps)]
        return load_recipe(recipe, [*device, *where, *overrides, *lever])

    base = load("medsft", [])
    tokenizer, model_dir = load_tokenizer_and_model_dir(base)

    def new_model(recipe: Recipe) -> torch.nn.Module:  # seeded: the same initial weights on every call
        model = load_model(recipe, model_dir, tokenizer)
        dtype = recipe.model.dtype  # in the recipe's dtype, as a real checkpoint loads
        return model.to(getattr(torch, dtype)) if dtype not in (None, "auto") else model

    return BenchSetup(raw_rows, tokenizer, base, load, new_model)


def reference_path(setup: BenchSetup) -> TrainingPath:
    """The original train.py, with the bench recipe's step count, learning rate and timed-run settings."""
    sft = setup.base.sft

    def build(callbacks: list):
        return original_recipe.build_original_trainer(
            setup.new_model(setup.base).to(torch.bfloat16),  # the original loads it with torch_dtype=bf16
            setup.tokenizer,
            setup.raw_rows,
            str(Path(sft.output_dir).parent / REFERENCE),
            sft.max_steps,
            sft.learning_rate,
            callbacks,
            sft.max_length,
            run_settings={key: getattr(sft, key) for key in RUN_SETTINGS},
        )

    description = (
        "original train.py: Trainer, bf16 weights, batch 1 x accum 4, checkpointing, full-logit loss"
    )
    return TrainingPath(REFERENCE, description, build)


def recipe_data(recipe: Recipe, setup: BenchSetup):
    """The rows through `load_data`, as `medsft train` reads them; every one must be kept."""
    data = load_data(recipe, setup.tokenizer, {"train": Path(recipe.medsft.dataset) / "train.jsonl"})
    dropped = len(setup.raw_rows) - len(data.train_rows)
    if dropped:
        raise BenchError(
            f"{dropped} of the {len(setup.raw_rows)} rows are longer than max_length "
            f"{recipe.sft.max_length}: both paths must train the same rows; use fewer --rows."
        )
    return data


def medsft_path(setup: BenchSetup, name: str, description: str, lever: list[str]) -> TrainingPath:
    """medsft's trainer exactly as `medsft train` builds it: recipe, rows, model, `build_trainer`.

    The recipe is loaded when its trainer is built: loading it sets up accelerate's process-wide state.
    """

    def build(callbacks: list):
        recipe = setup.load(name, lever)
        model = setup.new_model(recipe)
        return build_trainer(recipe, model, setup.tokenizer, recipe_data(recipe, setup), callbacks)

    return TrainingPath(name, description, build)


def trl_path(setup: BenchSetup) -> TrainingPath:
    """TRL's SFTTrainer out of the box (its own loss) with the same recipe and rows."""
    from datasets import Dataset
    from trl import SFTTrainer

    def build(callbacks: list):
        recipe = setup.load(TRL, [])
        rows = [{"messages": row["messages"]} for row in recipe_data(recipe, setup).train_rows]
        return SFTTrainer(
            model=setup.new_model(recipe),
            args=recipe.sft,
            train_dataset=Dataset.from_list(rows),
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )

    return TrainingPath(TRL, "TRL SFTTrainer out of the box (its own loss), otherwise as medsft", build)


def training_paths(
    setup: BenchSetup, names: list[str], levers: dict[str, tuple[str, list[str]]] = LEVERS
) -> list[TrainingPath]:
    """`reference`, `trl`, or a lever of medsft: its description and recipe overrides."""
    paths = []
    for name in names:
        if name == REFERENCE:
            paths.append(reference_path(setup))
        elif name == TRL:
            paths.append(trl_path(setup))
        elif name in levers:
            paths.append(medsft_path(setup, name, *levers[name]))
        else:
            known = ", ".join([REFERENCE, *levers, TRL])
            raise BenchError(f"Unknown training path {name!r}; known: {known}.")
    return paths


def trained_tokens_per_item(trainer) -> list[int]:
    """Trained (next-token) positions of each training row, through the trainer's own collator."""
    collate = trainer.data_collator
    return [int((collate([item])["labels"][0][1:] != -100).sum()) for item in trainer.train_dataset]


def state_bytes(trainer) -> int:
    tensors = list(trainer.model.parameters())
    if trainer.optimizer is not None:
        tensors += [v for state in trainer.optimizer.state.values() for v in state.values()]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def run_training(paths: list[TrainingPath]) -> list[PathResult]:
    """Every path trains in its own thread, taking turns step by step.

    A path builds its trainer in its first turn, right before training: building sets accelerate's
    process-wide state (bf16 autocast or not), which the trainer then prepares its model with.
    """
    turns = Turns([path.name for path in paths])
    clocks = {path.name: StepClock(path.name, turns) for path in paths}
    trainers: dict[str, object] = {}
    errors: list[BaseException] = []

    def train(path: TrainingPath) -> None:
        try:
            turns.wait(path.name)
            trainer = trainers[path.name] = path.build([clocks[path.name]])
            trainer.remove_callback(PrinterCallback)  # its log lines would mix into the report on stdout
            trainer.train()
        except BaseException as error:  # raised again in the main thread
            errors.append(error)
            turns.done(path.name, finished=True)

    threads = [threading.Thread(target=train, args=(path,), name=f"bench-{path.name}") for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    results = []
    for path in paths:
        trainer, clock = trainers[path.name], clocks[path.name]
        per_item = trained_tokens_per_item(trainer)
        lengths = [len(item["input_ids"]) for item in trainer.train_dataset]
        per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
        steps = [
            [(step * per_step + i) % len(per_item) for i in range(per_step)]
            for step in range(len(clock.step_seconds))
        ]
        results.append(
            PathResult(
                path.name,
                path.description,
                [sum(per_item[i] for i in rows) for rows in steps],
                [[lengths[i] for i in rows] for rows in steps],
                clock.step_seconds,
                clock.step_cpu_seconds,
                clock.losses,
                state_bytes(trainer),
                clock.step_memory_growth,
                clock.step_peak_allocated,
                clock.step_peak_reserved,
                getattr(trainer.model.config, "_attn_implementation", None),
            )
        )
        log.info(
            "%-24s %8.1f trained tokens/s, losses %s",
            path.name,
            results[-1].tokens_per_s(),
            " ".join(f"{loss:.3f}" for loss in clock.losses),
        )
    return results


def training_table(results: list[PathResult], tail_steps: int = 4) -> tuple[str, dict]:
    """Markdown table against the first path, and the numbers behind it."""
    base = results[0]
    lines = [
        f"| path | trained tokens/s | × {base.name} (wall) | × (median of step pairs) | × (CPU time) "
        f"| trained tokens/step | loss step 1 | loss, last {tail_steps} steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict = {}
    for result in results:
        pairs = [mine / other for mine, other in zip(result.step_rates(), base.step_rates(), strict=False)]
        tail = result.losses[-tail_steps:] or [float("nan")]
        numbers = {
            "tokens_per_s": result.tokens_per_s(),
            "ratio_wall": result.tokens_per_s() / base.tokens_per_s(),
            "ratio_step_pairs_median": statistics.median(pairs) if pairs else float("nan"),
            "ratio_cpu": result.tokens_per_s(cpu=True) / base.tokens_per_s(cpu=True),
            "step_tokens": result.step_tokens,
            "step_seconds": result.step_seconds,
            "step_cpu_seconds": result.step_cpu_seconds,
            "losses": result.losses,
        }
        summary[result.name] = numbers
        first_loss = result.losses[0] if result.losses else float("nan")
        lines.append(
            f"| {result.name} | {numbers['tokens_per_s']:.1f} | {numbers['ratio_wall']:.2f}× "
            f"| {numbers['ratio_step_pairs_median']:.2f}× | {numbers['ratio_cpu']:.2f}× "
            f"| {statistics.mean(result.step_tokens):.0f} | {first_loss:.3f} | {statistics.mean(tail):.3f} |"
        )
    descriptions = [f"- `{result.name}`: {result.description}" for result in results]
    return "\n".join([*lines, "", *descriptions]), summary


def measure_roofline(setup: BenchSetup, results: list[PathResult], repeats: int) -> tuple[str, dict]:
    """The floor of the bench recipe's step at the mean row medsft trained (its own collator's counts), and
    every path's measured trained tokens/s as a fraction of it."""
    sft = setup.base.sft
    rows_per_step = sft.per_device_train_batch_size * sft.gradient_accumulation_steps
    medsft = next((result for result in results if result.name in LEVERS), results[-1])
    shape = roofline.shape_of_rows(
        medsft.step_tokens, [length for step in medsft.step_lengths for length in step], rows_per_step
    )
    floor = roofline.measure(setup.new_model(setup.base), shape, repeats)
    return roofline.roofline_table(floor, {result.name: result.tokens_per_s() for result in results})


# ---------------------------------------------------------------- generation


def run_generation(
    setup: BenchSetup, questions: list[str], max_new_tokens: int, batch_size: int, repeats: int
) -> tuple[str, dict]:
    """medsft's batched generation against the original loop, runs alternating, tokens up to end of turn."""
    from medsft.engine import GenerationSettings, load_engine

    with tempfile.TemporaryDirectory() as folder:  # loaded as `medsft infer` loads a trained model
        setup.new_model(setup.base).save_pretrained(folder)
        setup.tokenizer.save_pretrained(folder)
        generator = load_engine(folder)
    settings = GenerationSettings.greedy(max_new_tokens=max_new_tokens)
    conversations = [prompt_messages(question) for question in questions]

    def one_by_one() -> int:
        outputs = original_recipe.original_generate_one_by_one(
            generator.model, generator.tokenizer, questions, max_new_tokens
        )
        return sum(
            next((i for i, t in enumerate(ids) if t in generator.eos_ids), len(ids)) for ids in outputs
        )

    def batched() -> int:
        outputs = generator.generate(conversations, settings, batch_size=batch_size)
        return sum(output.reasoning_tokens + output.answer_tokens for output in outputs)

    runs = {"one-by-one": one_by_one, f"batched ({batch_size})": batched}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    tokens: dict[str, int] = {}
    for repeat in range(repeats):
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            start = time.perf_counter()
            tokens[name] = runs[name]()
            rates[name].append(tokens[name] / (time.perf_counter() - start))
            log.info("generation %d/%d %-12s %8.1f tokens/s", repeat + 1, repeats, name, rates[name][-1])
    base, mine = list(runs)
    ratios = [b / a for a, b in zip(rates[base], rates[mine], strict=True)]
    table = "\n".join(
        [
            "| generation path | new tokens/s (median) | × one-by-one (median of pairs) "
            "| new tokens per run |",
            "|---|---:|---:|---:|",
            f"| {base} | {statistics.median(rates[base]):.1f} | 1.00× | {tokens[base]} |",
            f"| {mine} | {statistics.median(rates[mine]):.1f} | {statistics.median(ratios):.2f}× "
            f"({', '.join(f'{r:.2f}' for r in ratios)}) | {tokens[mine]} |",
        ]
    )
    return table, {"tokens_per_s": rates, "ratios": ratios}


# ---------------------------------------------------------------- the run


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for package in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return ", ".join(parts)


def machine() -> str:
    device = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU"
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    return f"{device}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}{load}"


def describe_model(model: torch.nn.Module) -> str:
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    return (
        f"random-init {type(model).__name__} (hidden {config.hidden_size}, {config.num_hidden_layers} "
        f"layers, {config.num_attention_heads} heads / {config.num_key_value_heads} KV heads, vocabulary "
        f"{config.vocab_size:,}, {parameters / 1e6:.1f} M parameters)"
    )


def read_rows(count: int) -> list[dict]:
    path = shared_dir() / ROWS_FILE
    if not path.is_file():
        raise BenchError(
            f"{path} is missing: the benchmark trains on real rows. Set MEDSFT_SHARED to the folder "
            f"that holds {ROWS_FILE}."
        )
    return read_jsonl(path)[:count]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        allow_abbrev=False,  # an abbreviation could swallow a recipe override
        description="Training and generation speed of medsft against the original recipe, side by side. "
        "Flags this benchmark does not know override the bench recipe (--tiny_num_layers 8 ...).",
    )
    parser.add_argument(
        "--recipe", default=BENCH_RECIPE, help="medsft's recipe (default: recipes/bench.yaml)"
    )
    parser.add_argument("--rows", type=int, default=64, help="real validation rows to train on (64)")
    parser.add_argument("--steps", type=int, help="optimizer steps per path (default: rows / 4, one pass)")
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"training paths, the first is the baseline (default {DEFAULT_VARIANTS}); "
        f"known: {', '.join([REFERENCE, *LEVERS, TRL])}",
    )
    parser.add_argument("--gen-questions", type=int, default=16, help="questions to generate for (16)")
    parser.add_argument("--gen-tokens", type=int, default=64, help="max_new_tokens per question (64)")
    parser.add_argument("--gen-batch", type=int, default=8, help="medsft's generation batch size (8)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating generation runs per path (3)")
    parser.add_argument("--skip-train", action="store_true", help="only the generation benchmark")
    parser.add_argument("--skip-generation", action="store_true", help="only the training benchmark")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's, one per core); 1 where other work "
        "holds a core, as a thread waiting for a busy core stalls every parallel kernel",
    )
    parser.add_argument("--skip-roofline", action="store_true", help="no roofline table after training")
    parser.add_argument(
        "--roofline-repeats", type=int, default=roofline.DEFAULT_REPEATS, help="timings per kernel layout (5)"
    )
    parser.add_argument("--json", type=Path, help="also write the per-step numbers to this JSON file")
    args, overrides = parser.parse_known_args(argv)
    args.steps = args.steps or max(2, args.rows // 4)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if len(args.variants) < 2:
        parser.error(f"--variants needs two paths or more (the first is the baseline); got {args.variants}")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = f"python -m benchmarks.bench {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    started = datetime.now(timezone.utc)
    raw_rows = read_rows(args.rows)
    parts = []
    raw: dict = {"command": command}
    with tempfile.TemporaryDirectory() as work:
        setup = prepare(args.recipe, raw_rows, Path(work), args.steps, overrides)
        if not args.skip_train:
            paths = training_paths(setup, args.variants)
            log.info("%d rows, %d optimizer steps per path: %s", len(raw_rows), args.steps, args.variants)
            results = run_training(paths)
            table, raw["training"] = training_table(results, tail_steps=min(4, args.steps))
            parts.append(
                f"**Training** ({len(raw_rows)} real rows, {args.steps} optimizer steps per path, taking "
                f"turns step by step; tokens/s exclude each path's first step)\n\n{table}"
            )
            if not args.skip_roofline:
                table, raw["roofline"] = measure_roofline(setup, results, args.roofline_repeats)
                parts.append(
                    "**Roofline** (`benchmarks/roofline.py`: each kernel of one optimizer step of the bench "
                    f"recipe at the mean row of this run, in its fastest measured layout)\n\n{table}"
                )
        if not args.skip_generation:
            questions = [row["question"] for row in raw_rows[: args.gen_questions]]
            table, raw["generation"] = run_generation(
                setup, questions, args.gen_tokens, args.gen_batch, args.repeats
            )
            parts.append(
                f"**Generation** ({len(questions)} questions, greedy, max_new_tokens {args.gen_tokens}, "
                f"same model)\n\n{table}"
            )
    base = setup.base
    minutes = (datetime.now(timezone.utc) - started).total_seconds() / 60
    report = "\n\n".join(
        [
            f"Run {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min. Recipe `{base.path.name}`: "
            f"{describe_model(setup.new_model(base))}, dtype {base.model.dtype}, "
            f"max_length {base.sft.max_length}, learning rate {base.sft.learning_rate}.",
            *parts,
            f"Machine: {machine()}.  \nVersions: {versions()}.  \nCommand: `{command}`",
        ]
    )
    print(report)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("bench", main, sys.argv[1:]))
