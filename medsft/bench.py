"""`medsft bench`: training and generation speed of medsft against the original recipe, side by side.

Training: the original project's path (benchmarks/original_recipe.py) and medsft's path train the same
random-init Qwen3 (bench shape, real 151,669-token vocabulary) on the same real rows in the same order, in one
process, each in its own thread, taking turns one optimizer step at a time (A B B A ...) so that load changes
on a shared machine hit both alike. Reported per path: trained (assistant) tokens per second after the first
step, the ratios to the first path (wall time, median of step pairs, CPU time), the memory a step adds, and
the loss. Generation: medsft's batched `Generator.generate` against the original one-question-at-a-time loop
on the same model and questions (greedy), in alternating runs. The tables are printed and written into
docs/benchmarks.md between markers; the rest of that file is kept.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
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
from types import ModuleType

import torch
from transformers import TrainerCallback

from medsft.paths import DEFAULT_SYSTEM_PROMPT, REPO_ROOT, real_tokenizer_dir, shared_dir

DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
VAL_ROWS = Path("data/delicate_medical_r1_data/val.jsonl")
BENCH_SHAPE = {"hidden_size": 256, "num_layers": 4, "num_heads": 8, "num_kv_heads": 4}


@functools.cache
def load_original_recipe() -> ModuleType:
    """benchmarks/original_recipe.py (not part of the installed package), loaded once."""
    path = REPO_ROOT / "benchmarks" / "original_recipe.py"
    spec = importlib.util.spec_from_file_location("medsft_original_recipe", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path} is missing: the benchmark's reference lives there.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- measurement helpers


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory (CPU) or peak allocated CUDA memory while the block runs, polled in a thread."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            self._stop.wait(self.interval_s)

    def reset(self) -> int:
        """Restart the peak from the current resident memory, which it returns."""
        self.peak = current_rss_bytes()
        return self.peak

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak = current_rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if torch.cuda.is_available():
            self.peak = torch.cuda.max_memory_allocated()


class Lockstep:
    """Turn-taking between training threads: one optimizer step each, order reversed every round (A B B A)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.condition = threading.Condition()
        self.round = 0
        self.position = 0
        self.finished: set[str] = set()

    def _current(self) -> str:
        order = self.names if self.round % 2 == 0 else self.names[::-1]
        return order[self.position]

    def _advance(self) -> None:
        for _ in range(2 * len(self.names)):
            self.position += 1
            if self.position == len(self.names):
                self.position, self.round = 0, self.round + 1
            if self._current() not in self.finished:
                return

    def acquire(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self._current() == name)

    def release(self, name: str, finished: bool = False) -> None:
        with self.condition:
            if finished:
                self.finished.add(name)
            if self._current() == name:
                self._advance()
            self.condition.notify_all()


class StepClock(TrainerCallback):
    """Takes turns with the other paths and records, per optimizer step: exclusive wall time, CPU time, loss
    and the growth of resident memory within the step (activations, logits), while no other path runs."""

    def __init__(self, name: str, lockstep: Lockstep | None, memory: PeakMemory):
        self.name = name
        self.lockstep = lockstep
        self.memory = memory
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []
        self.step_memory_growth: list[int] = []
        self.losses: list[float] = []
        self._start = self._cpu_start = 0.0
        self._rss_start = 0

    def _begin(self) -> None:
        if self.lockstep is not None:
            self.lockstep.acquire(self.name)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._rss_start = self.memory.reset()
        if torch.cuda.is_available():
            self._rss_start = torch.cuda.memory_allocated()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_begin(self, args, state, control, **kwargs):
        self._begin()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.step_seconds.append(time.perf_counter() - self._start)
        self.step_cpu_seconds.append(time.process_time() - self._cpu_start)
        if torch.cuda.is_available():
            self.step_memory_growth.append(torch.cuda.max_memory_allocated() - self._rss_start)
        else:
            self.step_memory_growth.append(self.memory.peak - self._rss_start)
        if self.lockstep is not None:
            self.lockstep.release(self.name)
        self._begin()

    def on_train_end(self, args, state, control, **kwargs):
        if self.lockstep is not None:
            self.lockstep.release(self.name, finished=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def trained_tokens_per_item(trainer) -> list[int]:
    """Trained (next-token) positions of each training item, through the trainer's own collator."""
    collate = trainer.data_collator
    counts = []
    for item in trainer.train_dataset:
        labels = collate([item])["labels"][0]
        counts.append(int((labels[1:] != -100).sum()))
    return counts


# ---------------------------------------------------------------- the training paths


@dataclass
class BenchSetup:
    tokenizer: object
    raw_rows: list[dict]
    model_factory: Callable[[torch.dtype], torch.nn.Module]  # the same initial weights on every call
    steps: int
    learning_rate: float
    max_length: int
    work_dir: Path
    device: str


@dataclass
class Variant:
    name: str
    description: str
    build: Callable[[BenchSetup, list], object]
    rows_per_step: int = 4


def new_model(setup: BenchSetup, dtype: torch.dtype):
    return setup.model_factory(dtype)


def bench_shape_factory(tokenizer, device: str, shape: dict = BENCH_SHAPE) -> Callable:
    """Random-init Qwen3 of the given shape with the tokenizer's vocabulary; the same weights on each call."""
    from medsft.model import build_tiny_qwen3

    init_state = {k: v.clone() for k, v in build_tiny_qwen3(tokenizer, **shape).state_dict().items()}

    def factory(dtype: torch.dtype):
        model = build_tiny_qwen3(tokenizer, **shape)
        model.load_state_dict(init_state)
        return model.to(device=device, dtype=dtype)

    return factory


def build_reference(setup: BenchSetup, callbacks: list):
    original = load_original_recipe()
    model = new_model(setup, torch.bfloat16)  # the original loads the model with torch_dtype=torch.bfloat16
    return original.build_original_trainer(
        model,
        setup.tokenizer,
        setup.raw_rows,
        str(setup.work_dir / "reference"),
        setup.steps,
        setup.learning_rate,
        callbacks,
        setup.max_length,
    )


def messages_rows(raw_rows: list[dict]) -> list[dict]:
    """The rows as `medsft data` writes them: system, user, assistant `<think>\\n…\\n</think>\\n\\n…`."""
    from medsft.data import convert_row

    return [{"messages": convert_row(row)} for row in raw_rows]


# The speed settings medsft's recipes use (see docs/benchmarks.md for the measurements behind each).
MEDSFT_SPEED_SETTINGS: dict = {
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 4,
    "activation_checkpointing": False,
    "bf16": True,
    "dataloader_num_workers": 0,
}


def sft_trainer_builder(
    trainer_class_name: str,
    dtype: torch.dtype,
    head_dtype: torch.dtype | None = None,
    compile_layers: bool = False,
    **overrides,
) -> Callable:
    def build(setup: BenchSetup, callbacks: list):
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from medsft.trainer import FastSFTTrainer

        settings = {"max_length": setup.max_length, **MEDSFT_SPEED_SETTINGS, **overrides}
        config = SFTConfig(
            output_dir=str(setup.work_dir / trainer_class_name),
            assistant_only_loss=True,
            learning_rate=setup.learning_rate,
            lr_scheduler_type="linear",
            max_steps=setup.steps,
            **load_original_recipe().BENCHMARK_RUN_SETTINGS,
            use_cpu=setup.device == "cpu",
            **settings,
        )
        extra = (
            {"head_dtype": head_dtype, "compile_layers": compile_layers}
            if trainer_class_name == "medsft"
            else {}
        )
        trainer_class = FastSFTTrainer if trainer_class_name == "medsft" else SFTTrainer
        return trainer_class(
            **extra,
            model=new_model(setup, dtype),
            args=config,
            train_dataset=Dataset.from_list(messages_rows(setup.raw_rows)),
            processing_class=setup.tokenizer,
            callbacks=callbacks,
        )

    return build


VARIANTS: dict[str, Variant] = {
    "reference": Variant(
        "reference",
        "original train.py: Trainer, bf16 weights, batch 1 × accum 4, checkpointing, full-logit loss",
        build_reference,
    ),
    "medsft": Variant(
        "medsft",
        "FastSFTTrainer: loss at trained positions only, bf16, batch 1 × accum 4, no checkpointing",
        sft_trainer_builder("medsft", torch.bfloat16),
    ),
    "trl": Variant(
        "trl",
        "TRL SFTTrainer out of the box, otherwise as medsft",
        sft_trainer_builder("trl", torch.bfloat16),
    ),
    "medsft-checkpointing": Variant(
        "medsft-checkpointing",
        "medsft + activation checkpointing",
        sft_trainer_builder("medsft", torch.bfloat16, activation_checkpointing=True),
    ),
    "medsft-fp32": Variant(
        "medsft-fp32",
        "medsft with fp32 weights and no bf16 autocast",
        sft_trainer_builder("medsft", torch.float32, bf16=False),
    ),
    "medsft-fp32-master": Variant(
        "medsft-fp32-master",
        "medsft with fp32 weights under bf16 autocast",
        sft_trainer_builder("medsft", torch.float32),
    ),
    "medsft-fp32-bf16-head": Variant(
        "medsft-fp32-bf16-head",
        "medsft with fp32 weights, no autocast, output projection in bf16",
        sft_trainer_builder("medsft", torch.float32, head_dtype=torch.bfloat16, bf16=False),
    ),
    "medsft-compile": Variant(
        "medsft-compile",
        "medsft with each decoder block compiled (torch.compile, dynamic shapes; compiling is in step 1)",
        sft_trainer_builder("medsft", torch.bfloat16, compile_layers=True),
    ),
    "medsft-batch4": Variant(
        "medsft-batch4",
        "medsft with batch 4 × accum 1 (padded)",
        sft_trainer_builder(
            "medsft", torch.bfloat16, per_device_train_batch_size=4, gradient_accumulation_steps=1
        ),
    ),
    "medsft-padding-free": Variant(
        "medsft-padding-free",
        "medsft with batch 4 × accum 1, padding-free (one packed row, position_ids)",
        sft_trainer_builder(
            "medsft",
            torch.bfloat16,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            padding_free=True,
            max_length=None,  # TRL enforces no max_length without packing; every bench row fits 2048
        ),
    ),
    "medsft-workers": Variant(
        "medsft-workers",
        "medsft with 2 dataloader workers",
        sft_trainer_builder("medsft", torch.bfloat16, dataloader_num_workers=2),
    ),
}


@dataclass
class PathResult:
    variant: str
    step_tokens: list[int]
    step_seconds: list[float]
    step_cpu_seconds: list[float]
    step_memory_growth: list[int]
    step_lengths: list[list[int]]  # every row's token count (prompt included), per step
    peak_memory: int  # own weights (+ optimizer state after step 1) + the largest growth within a step
    losses: list[float] = field(default_factory=list)

    def tokens_per_s(self, cpu: bool = False) -> float:
        """Trained tokens per second over all steps but the first (warm-up)."""
        seconds = (self.step_cpu_seconds if cpu else self.step_seconds)[1:]
        return (
            sum(self.step_tokens[1 : 1 + len(seconds)]) / sum(seconds) if sum(seconds) > 0 else float("nan")
        )

    def step_rates(self) -> list[float]:
        return [t / s for t, s in zip(self.step_tokens[1:], self.step_seconds[1:], strict=False)]


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def own_peak_memory(trainer, step_growth: list[int]) -> int:
    """A path's own peak: its weights, plus its optimizer state from step 2 on, plus the most a step adds.

    Paths train side by side in one process, so process-wide peaks would count the other path's weights too.
    """
    if not step_growth:
        return 0
    weights = tensor_bytes(trainer.model.parameters())
    optimizer = trainer.optimizer
    states = tensor_bytes(v for state in optimizer.state.values() for v in state.values()) if optimizer else 0
    later = max(step_growth[1:], default=0)
    return max(weights + step_growth[0], weights + states + later)


def run_training(setup: BenchSetup, names: list[str], log: Callable[[str], None]) -> list[PathResult]:
    """All paths train in their own thread, taking turns step by step, so load changes hit them alike."""
    lockstep = Lockstep(names)
    results: dict[str, PathResult] = {}
    errors: list[BaseException] = []
    with PeakMemory() as memory:
        trainers, clocks, per_item = {}, {}, {}
        for name in names:
            clocks[name] = StepClock(name, lockstep, memory)
            trainers[name] = VARIANTS[name].build(setup, [clocks[name]])
            per_item[name] = trained_tokens_per_item(trainers[name])

        def train(name: str) -> None:
            try:
                trainers[name].train()
            except BaseException as error:  # reported in the main thread
                errors.append(error)
                lockstep.release(name, finished=True)

        threads = [threading.Thread(target=train, args=(name,), name=f"bench-{name}") for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    for name in names:
        trainer, clock, items = trainers[name], clocks[name], per_item[name]
        rows_per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
        lengths = [len(item["input_ids"]) for item in trainer.train_dataset]
        steps = range(len(clock.step_seconds))
        rows = [[(step * rows_per_step + i) % len(items) for i in range(rows_per_step)] for step in steps]
        results[name] = PathResult(
            name,
            [sum(items[i] for i in step_rows) for step_rows in rows],
            clock.step_seconds,
            clock.step_cpu_seconds,
            clock.step_memory_growth,
            [[lengths[i] for i in step_rows] for step_rows in rows],
            own_peak_memory(trainer, clock.step_memory_growth),
            clock.losses,
        )
        result = results[name]
        log(
            f"  {name:<22} {result.tokens_per_s():8.1f} trained tokens/s wall, "
            f"{result.tokens_per_s(cpu=True):8.1f} per CPU-second; losses {_fmt_losses(result.losses)}"
        )
    trainers.clear()
    gc.collect()
    return [results[name] for name in names]


def _fmt_losses(losses: list[float]) -> str:
    return " ".join(f"{loss:.3f}" for loss in losses)


def training_table(results: list[PathResult], tail_steps: int) -> tuple[str, dict]:
    baseline = results[0]
    memory_label = "peak memory (own)"
    lines = [
        f"| path | trained tokens/s | × {baseline.variant} (wall) | × (median of step pairs) | × (CPU time) "
        f"| trained tokens/step | {memory_label} | loss step 1 | loss, last {tail_steps} steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict = {}
    for result in results:
        pair_ratios = [
            mine / base
            for mine, base in zip(result.step_rates(), baseline.step_rates(), strict=False)
            if base > 0
        ]
        wall_ratio = result.tokens_per_s() / baseline.tokens_per_s()
        cpu_ratio = result.tokens_per_s(cpu=True) / baseline.tokens_per_s(cpu=True)
        tail = result.losses[-tail_steps:] or [float("nan")]
        peak = result.peak_memory
        summary[result.variant] = {
            "tokens_per_s": result.tokens_per_s(),
            "tokens_per_cpu_s": result.tokens_per_s(cpu=True),
            "ratio_wall": wall_ratio,
            "ratio_step_pairs_median": statistics.median(pair_ratios) if pair_ratios else float("nan"),
            "ratio_cpu": cpu_ratio,
            "step_tokens": result.step_tokens,
            "step_seconds": result.step_seconds,
            "peak_memory_bytes": peak,
            "losses": result.losses,
        }
        lines.append(
            f"| {result.variant} | {result.tokens_per_s():.1f} | {wall_ratio:.2f}× | "
            f"{summary[result.variant]['ratio_step_pairs_median']:.2f}× | {cpu_ratio:.2f}× | "
            f"{statistics.mean(result.step_tokens):.0f} | {peak / 2**30:.2f} GiB | "
            f"{result.losses[0] if result.losses else float('nan'):.3f} | {statistics.mean(tail):.3f} |"
        )
    return "\n".join(lines), summary


# ---------------------------------------------------------------- generation


def run_generation(
    setup: BenchSetup,
    questions: int,
    max_new_tokens: int,
    batch_size: int,
    repeats: int,
    log: Callable[[str], None],
) -> tuple[str, dict]:
    from medsft.generate import GenerationSettings, load_generator

    original = load_original_recipe()
    with tempfile.TemporaryDirectory() as folder:
        model = new_model(setup, torch.float32)
        model.generation_config.eos_token_id = [setup.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        model.save_pretrained(folder)
        setup.tokenizer.save_pretrained(folder)
        generator = load_generator(folder, device=setup.device, dtype=torch.float32)
    eos = generator.eos_ids
    picked = [row["question"] for row in setup.raw_rows[:questions]]
    conversations = [
        [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": q}] for q in picked
    ]
    settings = GenerationSettings.greedy(max_new_tokens=max_new_tokens)

    def useful(ids: list[int]) -> int:
        return next((i for i, token in enumerate(ids) if token in eos), len(ids))

    def one_by_one() -> int:
        outputs = original.original_generate_one_by_one(
            generator.model, generator.tokenizer, picked, max_new_tokens
        )
        return sum(useful(ids) for ids in outputs)

    def batched() -> int:
        results = generator.generate(conversations, settings, batch_size=batch_size)
        return sum(r.reasoning_tokens + r.answer_tokens for r in results)

    runs: dict[str, list[tuple[int, float]]] = {"one-by-one": [], f"batched ({batch_size})": []}
    paths = list(runs.items())
    functions = {"one-by-one": one_by_one, f"batched ({batch_size})": batched}
    for repeat in range(repeats):
        order = paths if repeat % 2 == 0 else list(reversed(paths))
        for name, results in order:
            start = time.perf_counter()
            tokens = functions[name]()
            elapsed = time.perf_counter() - start
            results.append((tokens, elapsed))
            log(
                f"  repeat {repeat + 1}/{repeats} generation {name:<12} {tokens / elapsed:8.1f} tokens/s "
                f"({tokens} tokens)"
            )
    names = list(runs)
    rates = {name: [t / s for t, s in runs[name]] for name in names}
    ratios = [b / a for a, b in zip(rates[names[0]], rates[names[1]], strict=True)]
    lines = [
        "| generation path | new tokens/s (median) | × one-by-one (median of pairs) | new tokens per run |",
        "|---|---:|---:|---:|",
        f"| {names[0]} | {statistics.median(rates[names[0]]):.1f} | 1.00× | {runs[names[0]][0][0]} |",
        f"| {names[1]} | {statistics.median(rates[names[1]]):.1f} | {statistics.median(ratios):.2f}× "
        f"({', '.join(f'{r:.2f}' for r in ratios)}) | {runs[names[1]][0][0]} |",
    ]
    return "\n".join(lines), {"tokens_per_s": rates, "ratios": ratios}


# ---------------------------------------------------------------- machine, versions, record


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average at the end {os.getloadavg()[0]:.1f}"
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}{memory}{gpu}{load}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for package in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return ", ".join(parts)


def record(section: str, text: str, path: Path = DOC_PATH) -> None:
    """Replace the section between `<!-- bench:{section}:begin/end -->` markers, or append it."""
    begin, end = f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        tail = rest.split(end, 1)[1]
        updated = head + block + tail
    else:
        updated = existing.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated, encoding="utf-8")


# ---------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="medsft bench",
        description="Training and generation tokens/s of medsft against the original recipe, side by side.",
    )
    parser.add_argument("--rows", type=int, default=64, help="real validation rows to train on (default 64)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per path (default: rows / 4, one pass)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating generation runs of each path (default 3)"
    )
    parser.add_argument(
        "--variants",
        default="reference,medsft",
        help=f"comma-separated training paths, the first is the baseline; known: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="both paths (the original's 1e-4)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument(
        "--gen-questions", type=int, default=16, help="questions for the generation benchmark"
    )
    parser.add_argument(
        "--gen-tokens", type=int, default=64, help="max_new_tokens for the generation benchmark"
    )
    parser.add_argument("--gen-batch", type=int, default=8, help="batch size of medsft's batched generation")
    parser.add_argument("--skip-train", action="store_true", help="only the generation benchmark")
    parser.add_argument("--skip-generation", action="store_true", help="only the training benchmark")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="16 rows (4 steps), 8 questions × 32 tokens, 2 generation repeats: a few minutes",
    )
    parser.add_argument("--section", default="main", help="docs/benchmarks.md section the results replace")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help="markdown file to record into")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = min(args.rows, 16), 2
        args.gen_questions, args.gen_tokens = min(args.gen_questions, 8), min(args.gen_tokens, 32)
    args.steps = args.steps or max(2, args.rows // 4)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or len(names) < 2:
        print(
            f"medsft bench: --variants needs 2+ of {', '.join(VARIANTS)}; got {args.variants!r}",
            file=sys.stderr,
        )
        return 2
    tokenizer_dir = real_tokenizer_dir()
    rows_path = shared_dir() / VAL_ROWS
    if tokenizer_dir is None or not rows_path.is_file():
        print(
            f"medsft bench needs the real Qwen3 tokenizer and validation rows under {shared_dir()} "
            "(set MEDSFT_SHARED to the folder holding models/Qwen3-1.7B-tokenizer and data/...).",
            file=sys.stderr,
        )
        return 2
    from medsft.model import load_tokenizer

    command = "python -m medsft.cli bench " + " ".join(sys.argv[1:] if argv is None else argv)
    tokenizer = load_tokenizer(tokenizer_dir)
    raw_rows = [
        json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    raw_rows = raw_rows[: args.rows]
    started = datetime.now(timezone.utc)
    print(
        f"medsft bench: {len(raw_rows)} rows, {args.steps} optimizer steps per path, {names}",
        flush=True,
    )
    parts = []
    raw: dict = {"command": command, "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as work_dir:
        setup = BenchSetup(
            tokenizer,
            raw_rows,
            bench_shape_factory(tokenizer, args.device),
            args.steps,
            args.learning_rate,
            args.max_length,
            Path(work_dir),
            args.device,
        )
        if not args.skip_train:
            results = run_training(setup, names, lambda text: print(text, flush=True))
            table, raw["training"] = training_table(results, tail_steps=min(4, args.steps))
            descriptions = "\n".join(f"- `{name}`: {VARIANTS[name].description}" for name in names)
            parts.append(
                f"**Training** ({len(raw_rows)} real rows, {args.steps} optimizer steps per path, "
                "paths take turns step by step, A B B A ...; tokens/s exclude each path's first step)\n\n"
                f"{table}\n\n{descriptions}"
            )
        if not args.skip_generation:
            table, raw["generation"] = run_generation(
                setup,
                args.gen_questions,
                args.gen_tokens,
                args.gen_batch,
                args.repeats,
                lambda text: print(text, flush=True),
            )
            parts.append(
                f"**Generation** ({args.gen_questions} questions, greedy, max_new_tokens "
                f"{args.gen_tokens}, same model)\n\n{table}"
            )
    shape = ", ".join(f"{k} {v}" for k, v in BENCH_SHAPE.items())
    report = "\n\n".join(
        [
            f"Run {started:%Y-%m-%d %H:%M} UTC, "
            f"{(datetime.now(timezone.utc) - started).seconds / 60:.1f} min. "
            f"Model: random-init Qwen3 ({shape}, real tokenizer, vocabulary {len(tokenizer)}), max_length "
            f"{args.max_length}, learning rate {args.learning_rate}, device {args.device}.",
            *parts,
            f"Machine: {machine_description()}.  \nVersions: {versions()}.  \nCommand: `{command}`",
        ]
    )
    print("\n" + report)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    if not args.no_record:
        record(args.section, report, args.output)
        print(f"\nrecorded in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
