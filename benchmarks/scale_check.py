"""Scale check: medsft's whole path at the real Qwen3-1.7B shape, random weights of that exact architecture.

    make scale-check                                    # CPU, 2 optimizer steps per recipe: tens of minutes
    python -m benchmarks.scale_check --device cuda      # the same stages on a GPU
    python -m benchmarks.scale_check --stages data,full_1epoch,eval:full_1epoch --json FILE

Stages, each in its own process: the real rows converted by `medsft data`; `full_1epoch` and `lora` trained
with their shipped recipes for 2 optimizer steps, overriding only the model (`random:<config.json>`), the step
count, the device, the data and output folders and the token budget of the validation answers the run writes
after training (those reload final/); then `medsft eval` (4 held-out rows, 8 MCQ questions, a few tokens) and
`medsft infer` (one question) on each final/. A training stage is `medsft.train.run(load_recipe(recipe,
overrides))`, what `medsft train` runs, with one callback that reads memory at each optimizer step.

Recorded per stage: wall time; the process's peak resident memory (the kernel's high-water mark, from wait4),
and on a GPU its peak allocated GPU memory; for training, each optimizer step's time and how far memory rose
above what the process held when the step began; the size of checkpoints and final/. Training reports to no
tracker (`--report_to none`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medsft.cli import run_command
from medsft.errors import MedsftError
from medsft.paths import output_dir, shared_dir

log = logging.getLogger("medsft.scale_check")

CONFIG = Path("models/Qwen3-1.7B-tokenizer/config.json")  # under $MEDSFT_SHARED
ROWS = Path("data/delicate_medical_r1_data/val.jsonl")
RECIPES = ("full_1epoch", "lora")
DEFAULT_STAGES = "data,full_1epoch,eval:full_1epoch,infer:full_1epoch,lora,eval:lora,infer:lora"
QUESTION = "孕妇出现持续性头痛、视物模糊和血压升高，应考虑什么问题？"
GIB = 2**30


class ScaleCheckError(MedsftError):
    """A scale-check stage failed or its inputs are missing."""


@dataclass
class StageResult:
    name: str
    command: str
    returncode: int
    wall_s: float
    peak_rss_bytes: int  # the whole process: the kernel's high-water mark
    min_available_bytes: int | None  # the machine's least available memory while the stage ran
    steps: list[dict] = field(default_factory=list)  # training: one record per optimizer step
    # training: the peak from the last step's start to the end of training (its evaluation and checkpoint
    # included); a higher process peak comes after it (final/ saved, merged, reloaded for the val answers)
    train_end: dict = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # checkpoint-*/, final/, adapter/: bytes on disk
    log_file: str = ""
    timed_out: bool = False  # killed at its time limit (--stage-timeout, or the GPU check's budget)


# ---------------------------------------------------------------- inside the training process


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ScaleCheckError(f"/proc/self/status has no {key}")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:  # "5": reset VmHWM to VmRSS
        refs.write("5")


def step_memory_callback(records: Path):
    """A TrainerCallback writing, per optimizer step, its seconds and memory: resident at its start, the
    step's own peak (VmHWM reset at the start), resident at its end; on CUDA the same from the allocator."""
    import torch
    from transformers import TrainerCallback

    class StepMemory(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.cuda_begin = torch.cuda.memory_allocated()
            _reset_peak_rss()
            self.rss_begin = _status_kib("VmRSS") * 1024
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            record = {"step": state.global_step}
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                record.update(
                    cuda_begin=self.cuda_begin,
                    cuda_peak=torch.cuda.max_memory_allocated(),
                    cuda_reserved_peak=torch.cuda.max_memory_reserved(),
                )
            record.update(
                seconds=time.perf_counter() - self.started,
                rss_begin=self.rss_begin,
                rss_peak=_status_kib("VmHWM") * 1024,
                rss_end=_status_kib("VmRSS") * 1024,
            )
            self.write(record)

        def on_train_end(self, args, state, control, **kwargs):
            record = {"event": "train_end", "rss_peak": _status_kib("VmHWM") * 1024}
            self.write({**record, "rss_end": _status_kib("VmRSS") * 1024})

        def write(self, record: dict) -> None:
            with records.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    return StepMemory()


def train_child(argv: list[str]) -> int:
    """`--train-child RECORDS RECIPE overrides…`: what `medsft train --recipe RECIPE overrides…` runs."""
    from medsft.recipe import load_recipe
    from medsft.train import run

    records, recipe, *overrides = argv
    run(load_recipe(recipe, overrides), callbacks=[step_memory_callback(Path(records))])
    return 0


# ---------------------------------------------------------------- the parent: stages as processes


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_stage(name: str, command: list[str], log_file: Path, timeout_s: float | None) -> StageResult:
    """Run one stage as its own process; its peak RSS from wait4, the machine's free memory polled."""
    log.info("%s: %s", name, shlex.join(command))
    lowest: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            if (available := available_bytes()) is not None:
                lowest.append(available)

    env = {**os.environ, "SWANLAB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        killed = threading.Event()

        def stop() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout_s, stop) if timeout_s else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)  # not process.wait(): wait4 also gives its own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
        if timer:
            timer.cancel()
        done.set()
    wall = time.perf_counter() - started
    result = StageResult(
        name=name,
        command=shlex.join(command),
        returncode=process.returncode,
        wall_s=round(wall, 1),
        peak_rss_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
        min_available_bytes=min(lowest, default=None),
        log_file=str(log_file),
        timed_out=killed.is_set(),
    )
    log.info(
        "%s: exit %d, %.0f s, peak RSS %.2f GiB", name, result.returncode, wall, result.peak_rss_bytes / GIB
    )
    return result


def stage_commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    python = sys.executable
    rows = work / "rows"
    on_cpu = args.device == "cpu"
    commands = {
        "data": [python, "-m", "medsft.cli", "data", "--src", str(args.rows), "--out-dir", str(work)]
        + ["--name", "rows"]
    }
    for recipe in RECIPES:
        overrides = [
            *("--model_name_or_path", f"random:{args.config}", "--max_steps", str(args.steps)),
            *(["--use_cpu", "true"] if on_cpu else []),
            *("--dataset", str(rows), "--output_dir", str(work / recipe)),
            *("--overwrite_output_dir", "true", "--val_max_new_tokens", str(args.val_max_new_tokens)),
            *("--report_to", "none"),  # no experiment tracker: swanlab is not even imported
            *(["--save_only_model", "true"] if args.save_only_model else []),
        ]
        records = work / f"{recipe}.steps.jsonl"
        commands[recipe] = [python, "-m", "benchmarks.scale_check", "--train-child", str(records), recipe]
        commands[recipe] += overrides
        final = str(work / recipe / "final")
        device = ["--device", args.device]
        for backend in ("hf", "vllm"):
            suffix, app = ("", python) if backend == "hf" else ("-vllm", str(args.vllm_python or python))
            commands[f"eval{suffix}:{recipe}"] = [
                *(app, "-m", "medsft.cli", "eval", "--model", final, "--data", str(rows / "val.jsonl")),
                *("--limit", "4", "--mcq_limit", "8", "--max_new_tokens", str(args.new_tokens), "--greedy"),
                *("--name", f"{recipe}{suffix}", "--out_dir", str(work / "eval"), "--backend", backend),
                *device,
            ]
            commands[f"infer{suffix}:{recipe}"] = [
                *(app, "-m", "medsft.cli", "infer", "--model", final, "--question", QUESTION),
                *("--max-new-tokens", str(args.new_tokens), "--greedy", "--backend", backend, *device),
            ]
    return commands


def finish_training_stage(result: StageResult, work: Path, recipe: str, keep_checkpoints: bool) -> None:
    records = work / f"{recipe}.steps.jsonl"
    if records.is_file():
        written = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
        result.steps = [record for record in written if "event" not in record]
        result.train_end = next((record for record in written if record.get("event") == "train_end"), {})
    folder = work / recipe
    for part in sorted(folder.glob("checkpoint-*")) + [folder / "final", folder / "adapter"]:
        if part.is_dir():
            result.sizes[part.name] = folder_bytes(part)
            if part.name.startswith("checkpoint-") and not keep_checkpoints:
                import shutil

                shutil.rmtree(part)  # ~10 GB each for full_1epoch; only the size is the result


def run_named_stage(
    name: str, commands: dict[str, list[str]], work: Path, timeout_s: float | None, keep_checkpoints: bool
) -> StageResult:
    """A stage by name; a training stage also gets its step records and the sizes of what it saved."""
    records = work / f"{name}.steps.jsonl"
    if name in RECIPES:
        records.unlink(missing_ok=True)  # the callback appends
    result = run_stage(name, commands[name], work / "logs" / f"{name.replace(':', '_')}.log", timeout_s)
    if name in RECIPES:
        finish_training_stage(result, work, name, keep_checkpoints)
    return result


# ---------------------------------------------------------------- the report


def gib(value: float | None) -> str:
    return "–" if value is None else f"{value / GIB:.2f} GiB"


def step_growth(step: dict) -> tuple[int, int | None]:
    """(resident memory rise within the step, GPU allocation rise within the step) in bytes."""
    cuda = step["cuda_peak"] - step["cuda_begin"] if "cuda_peak" in step else None
    return step["rss_peak"] - step["rss_begin"], cuda


def report(results: list[StageResult], args: argparse.Namespace, started: float, command: str) -> str:
    cuda = args.device != "cpu"
    lines = [
        "| stage | wall time | peak RSS (process) | peak RSS to the end of training | "
        + ("peak GPU allocated (training steps) | " if cuda else "")
        + "training steps: s each | step's own rise | held at step start | on disk |",
        "|---|---:|---:|---:|" + ("---:|" if cuda else "") + "---|---|---|---|",
    ]
    for result in results:
        steps = result.steps
        times = ", ".join(f"{step['seconds']:.0f}" for step in steps) or "–"
        rises = ", ".join(gib(step_growth(step)[1 if cuda else 0]) for step in steps) or "–"
        held = ", ".join(gib(step["cuda_begin" if cuda else "rss_begin"]) for step in steps) or "–"
        sizes = ", ".join(f"{name} {gib(size)}" for name, size in result.sizes.items()) or "–"
        status = "" if result.returncode == 0 else f" (**exit {result.returncode}**)"
        if result.timed_out:
            status = " (**stopped at its time limit**)"
        training_peaks = [step["rss_peak"] for step in steps] + [result.train_end.get("rss_peak", 0)]
        training_peak = gib(max(training_peaks)) if steps else "–"
        gpu = f"{gib(max((s['cuda_peak'] for s in steps), default=None))} | " if cuda else ""
        lines.append(
            f"| {result.name}{status} | {result.wall_s:.0f} s | {gib(result.peak_rss_bytes)} "
            f"| {training_peak} | {gpu}{times} | {rises} | {held} | {sizes} |"
        )
    lowest = min((r.min_available_bytes for r in results if r.min_available_bytes is not None), default=None)
    return "\n".join(
        [
            f"Scale check, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, "
            f"device {args.device}, shape from {args.config}, {args.steps} optimizer steps per recipe, "
            f"{(time.time() - started) / 60:.1f} min in all. Least memory available on the machine while it "
            f"ran: {gib(lowest)} (of {gib(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))}).",
            "",
            *lines,
            "",
            f"Command: `{command}`",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale_check", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--config", type=Path, default=shared_dir() / CONFIG, help="the model's config.json")
    parser.add_argument("--rows", type=Path, default=shared_dir() / ROWS, help="raw rows for `medsft data`")
    parser.add_argument(
        "--stages",
        default=DEFAULT_STAGES,
        help=f"default {DEFAULT_STAGES}; also eval-vllm:<recipe>, infer-vllm:<recipe>",
    )
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per recipe (2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated by eval and infer (8)")
    parser.add_argument(
        "--val-max-new-tokens", type=int, default=8, help="token budget of the run's validation answers (8)"
    )
    parser.add_argument("--work", type=Path, default=None, help="default: $MEDSFT_OUTPUT_DIR/scale_check")
    parser.add_argument("--stage-timeout", type=float, default=None, help="seconds before a stage is killed")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoint-*/ (sizes are kept)")
    parser.add_argument(
        "--save-only-model",
        action="store_true",
        help="the end-of-training checkpoint without optimizer state (full_1epoch: 3.4 of its ~10 GB)",
    )
    parser.add_argument(
        "--vllm-python",
        type=Path,
        help="python of vLLM's environment for the -vllm stages (make setup-vllm: .venv-vllm/bin/python)",
    )
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--train-child"]:
        return train_child(argv[1:])
    args = parse_args(argv)
    for path, what in ((args.config, "model config.json"), (args.rows, "raw rows")):
        if not path.is_file():
            raise ScaleCheckError(f"{path} ({what}) is missing: set MEDSFT_SHARED or pass it explicitly.")
    work = (args.work or output_dir() / "scale_check").absolute()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    commands = stage_commands(args, work)
    names = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = [name for name in names if name not in commands]
    if unknown:
        raise ScaleCheckError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(commands)}")
    started = time.time()
    results = []
    for name in names:
        result = run_named_stage(name, commands, work, args.stage_timeout, args.keep_checkpoints)
        results.append(result)
        if args.json:  # after every stage: a stage that kills the machine leaves the earlier ones recorded
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    command = shlex.join(["python", "-m", "benchmarks.scale_check", *argv])
    print(report(results, args, started, command))
    failed = [r.name for r in results if r.returncode != 0]
    if failed:
        raise ScaleCheckError(f"stage(s) failed: {', '.join(failed)}; logs in {work / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("scale_check", main, sys.argv[1:]))
