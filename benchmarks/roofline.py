"""The CPU floor of one training step, measured kernel by kernel.

    python -m benchmarks.roofline                    # the bench shape: recipes/bench.yaml, 64 real rows
    python -m benchmarks.roofline --rows 16 --repeats 3

For the bench recipe's model and rows (mean trained tokens and mean length of a row), every kernel of a
training step is timed in each of several layouts (operand orientation, a reused output buffer or a fresh one,
chunk size, dtype of the softmax): the three products of the output layer, the softmax the loss reads, the
decoder's forward, its recomputation under activation checkpointing and its backward (the tied embedding's
gradient included), the gradient accumulation over the micro-batches and the optimizer step (gradient
clipping, AdamW, zeroing). A kernel's floor is its fastest layout (median of `repeats` timings, the layouts
timed in turns, the order reversed every round); the step's floor is the sum of the kernels' floors for one
optimizer step's work, and the floor in trained tokens/s is that step's trained tokens over it. `make bench`
prints this table next to each path's measured tokens/s as a fraction of the floor (docs/benchmarks.md).

The floor leaves out what any trainer spends besides these kernels (the data loader, the collator, the
autograd bookkeeping, the target's loss entries), so a path can only approach it.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger("medsft.bench")

DEFAULT_REPEATS = 5


@dataclass(frozen=True)
class StepShape:
    """One optimizer step's work: `rows_per_step` rows of `row_tokens` tokens, `trained_tokens` trained."""

    trained_tokens: int  # per row (mean)
    row_tokens: int  # per row (mean), prompt included
    rows_per_step: int

    @property
    def step_trained_tokens(self) -> int:
        return self.trained_tokens * self.rows_per_step


@dataclass
class Kernel:
    name: str
    calls_per_step: int
    layouts: dict[str, float]  # layout -> median seconds of one call
    flops: float | None = None  # of one call, for matrix products

    @property
    def best_layout(self) -> str:
        return min(self.layouts, key=self.layouts.__getitem__)

    @property
    def best_seconds(self) -> float:
        return self.layouts[self.best_layout]

    @property
    def step_seconds(self) -> float:
        return self.best_seconds * self.calls_per_step


@dataclass
class Roofline:
    shape: StepShape
    kernels: list[Kernel]
    threads: int
    load_average: float | None

    @property
    def floor_step_seconds(self) -> float:
        return sum(kernel.step_seconds for kernel in self.kernels)

    @property
    def floor_tokens_per_s(self) -> float:
        return self.shape.step_trained_tokens / self.floor_step_seconds


Timed = Callable[[], object]  # runs a layout once; returns its own seconds (a float) when it times itself


def time_layouts(layouts: dict[str, Timed], repeats: int) -> dict[str, float]:
    """Median seconds of each layout: a warm-up call each, then `repeats` rounds in turns (A B, B A, ...)."""
    names = list(layouts)
    for name in names:
        layouts[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            own = layouts[name]()
            seconds[name].append(own if isinstance(own, float) else time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


# ---------------------------------------------------------------- the output layer and its loss


def output_layer_kernels(
    weight: torch.Tensor, tokens: int, calls: int, repeats: int, chunks: tuple[int, ...] = (256, 512)
) -> list[Kernel]:
    """The three products of the output layer and the softmax, for `tokens` trained positions of one row."""
    generator = torch.Generator().manual_seed(0)
    vocab, hidden_size = weight.shape
    dtype = weight.dtype
    weight = weight.detach().contiguous()
    hidden = torch.randn(tokens, hidden_size, generator=generator).to(dtype)
    logits_buffer = torch.empty(tokens, vocab, dtype=dtype)
    logits_t_buffer = torch.empty(vocab, tokens, dtype=dtype)
    probs = torch.softmax(hidden @ weight.t(), dim=-1)
    flops = 2.0 * tokens * hidden_size * vocab

    def chunked_logits(chunk: int) -> Timed:
        def run() -> None:
            for start in range(0, tokens, chunk):
                end = min(start + chunk, tokens)
                torch.mm(hidden[start:end], weight.t(), out=logits_buffer[start:end])

        return run

    logits = time_layouts(
        {
            "h @ W.T": lambda: torch.mm(hidden, weight.t()),
            "W @ h.T": lambda: torch.mm(weight, hidden.t()),
            "h @ W.T into a reused buffer": lambda: torch.mm(hidden, weight.t(), out=logits_buffer),
            "W @ h.T into a reused buffer": lambda: torch.mm(weight, hidden.t(), out=logits_t_buffer),
            **{f"h @ W.T in chunks of {n} tokens, reused buffer": chunked_logits(n) for n in chunks},
        },
        repeats,
    )
    hidden_grad = time_layouts(
        {
            "P @ W": lambda: torch.mm(probs, weight),
            "(W.T @ P.T).T": lambda: torch.mm(weight.t(), probs.t()),
        },
        repeats,
    )
    weight_grad_buffer = torch.empty(vocab, hidden_size, dtype=dtype)
    weight_grad_t_buffer = torch.empty(hidden_size, vocab, dtype=dtype)
    hidden_t = hidden.t().contiguous()

    def vocabulary_blocks(rows: int) -> Timed:
        def run() -> torch.Tensor:
            grad = torch.empty(vocab, hidden_size, dtype=dtype)
            for start in range(0, vocab, rows):
                torch.mm(probs[:, start : start + rows].t(), hidden, out=grad[start : start + rows])
            return grad

        return run

    weight_grad = time_layouts(
        {
            "P.T @ h": lambda: torch.mm(probs.t(), hidden),
            "P.T @ h in blocks of 8192 vocabulary rows": vocabulary_blocks(8192),
            "(h.T @ P).T": lambda: torch.mm(hidden.t(), probs),
            "P.T @ h into a reused buffer": lambda: torch.mm(probs.t(), hidden, out=weight_grad_buffer),
            "(h.T @ P).T into a reused buffer": lambda: torch.mm(hidden_t, probs, out=weight_grad_t_buffer),
        },
        repeats,
    )
    source = torch.mm(hidden, weight.t())
    scratch = torch.empty_like(source)

    def in_place() -> float:
        scratch.copy_(source)  # not timed: the logits a product just wrote
        start = time.perf_counter()
        torch.softmax(scratch, dim=-1, out=scratch)
        return time.perf_counter() - start

    softmax = time_layouts(
        {
            f"{str(dtype).removeprefix('torch.')} softmax, new tensor": lambda: torch.softmax(source, dim=-1),
            f"{str(dtype).removeprefix('torch.')} softmax in place": in_place,
            "fp32 softmax of the logits": lambda: torch.softmax(source, dim=-1, dtype=torch.float32),
        },
        repeats,
    )
    return [
        Kernel("output layer: logits", calls, logits, flops),
        Kernel("output layer: hidden-state gradient", calls, hidden_grad, flops),
        Kernel("output layer: weight gradient", calls, weight_grad, flops),
        Kernel("softmax of the loss", calls, softmax),
    ]


# ---------------------------------------------------------------- the decoder and the optimizer


def decoder_kernels(model: torch.nn.Module, row_tokens: int, calls: int, repeats: int) -> list[Kernel]:
    """The decoder blocks (embedding to final norm) on one row under bf16 autocast when the weights are bf16:
    the forward (no graph, as activation checkpointing runs it), the recomputation (with a graph) and the
    backward (the embedding's dense gradient included)."""
    if getattr(model, "is_gradient_checkpointing", False):
        raise ValueError("the decoder is timed without activation checkpointing: pass a model without it")
    decoder = model.get_decoder()
    dtype = next(model.parameters()).dtype
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, row_tokens), generator=torch.Generator().manual_seed(0))
    model.train()

    def forward() -> None:
        with torch.no_grad(), autocast:
            decoder(input_ids=ids, use_cache=False)

    def recompute() -> None:
        with autocast:
            decoder(input_ids=ids, use_cache=False)

    def backward() -> float:
        for parameter in decoder.parameters():
            parameter.grad = None
        with autocast:
            out = decoder(input_ids=ids, use_cache=False).last_hidden_state
        grad = torch.ones_like(out) * 1e-3
        start = time.perf_counter()
        out.backward(grad)
        return time.perf_counter() - start

    layout = "as the model runs (sdpa attention)"
    return [
        Kernel("decoder: forward", calls, time_layouts({layout: forward}, repeats)),
        Kernel("decoder: recomputation", calls, time_layouts({layout: recompute}, repeats)),
        Kernel("decoder: backward", calls, time_layouts({layout: backward}, repeats)),
    ]


def optimizer_kernels(model: torch.nn.Module, rows_per_step: int, repeats: int) -> list[Kernel]:
    """Adding each further micro-batch's gradients, then clipping, AdamW and zeroing, on a model copy."""
    parameters = [p for p in copy.deepcopy(model).parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(0)
    grads = [(torch.randn(p.shape, generator=generator) * 1e-3).to(p.dtype) for p in parameters]
    accumulators = [g.clone() for g in grads]
    kernels = (
        [
            Kernel(
                "gradient accumulation",
                rows_per_step - 1,
                time_layouts(
                    {
                        "one add per tensor": lambda: [
                            a.add_(g) for a, g in zip(accumulators, grads, strict=True)
                        ],
                        "foreach add": lambda: torch._foreach_add_(accumulators, grads),
                    },
                    repeats,
                ),
            )
        ]
        if rows_per_step > 1
        else []
    )

    def step_with(optimizer: torch.optim.Optimizer) -> Timed:
        def run() -> float:
            for parameter, grad in zip(parameters, grads, strict=True):
                parameter.grad = grad.clone()
            start = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return time.perf_counter() - start

        return run

    optimizers = {
        "AdamW fused": torch.optim.AdamW(parameters, lr=1e-6, fused=True),
        "AdamW foreach": torch.optim.AdamW(parameters, lr=1e-6, foreach=True),
    }
    steps = time_layouts({name: step_with(optimizer) for name, optimizer in optimizers.items()}, repeats)
    return [*kernels, Kernel("optimizer step: clip, AdamW, zero", 1, steps)]


def measure(model: torch.nn.Module, shape: StepShape, repeats: int = DEFAULT_REPEATS) -> Roofline:
    """Every kernel of one optimizer step at `shape` for `model` (its weights' dtype; autocast if bf16)."""
    weight = model.get_output_embeddings().weight
    log.info("roofline: %s, %d repeats per layout", shape, repeats)
    kernels = [
        *output_layer_kernels(weight, shape.trained_tokens, shape.rows_per_step, repeats),
        *decoder_kernels(model, shape.row_tokens, shape.rows_per_step, repeats),
        *optimizer_kernels(model, shape.rows_per_step, repeats),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Roofline(shape, kernels, torch.get_num_threads(), load)


# ---------------------------------------------------------------- the table


def roofline_table(roofline: Roofline, measured: dict[str, float]) -> tuple[str, dict]:
    """Markdown: the kernels with their best layout, the floor, and each measured path against it.

    measured: path name -> trained tokens/s.
    """
    shape = roofline.shape
    lines = [
        "| kernel | calls per step | best layout | ms per call | GFLOP/s | ms per step "
        "| other layouts (ms) |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    kernels = []
    for kernel in roofline.kernels:
        rate = f"{kernel.flops / kernel.best_seconds / 1e9:.0f}" if kernel.flops else "–"
        others = ", ".join(
            f"{name} {seconds * 1e3:.1f}"
            for name, seconds in kernel.layouts.items()
            if name != kernel.best_layout
        )
        lines.append(
            f"| {kernel.name} | {kernel.calls_per_step} | {kernel.best_layout} "
            f"| {kernel.best_seconds * 1e3:.1f} | {rate} | {kernel.step_seconds * 1e3:.1f} "
            f"| {others or '–'} |"
        )
        kernels.append(
            {
                "name": kernel.name,
                "calls_per_step": kernel.calls_per_step,
                "layouts_seconds": kernel.layouts,
                "best_layout": kernel.best_layout,
                "step_seconds": kernel.step_seconds,
                "gflops": kernel.flops / kernel.best_seconds / 1e9 if kernel.flops else None,
            }
        )
    floor = roofline.floor_tokens_per_s
    lines.append(
        f"| **floor: one optimizer step** | | sum of the best layouts | | "
        f"| **{roofline.floor_step_seconds * 1e3:.1f}** | {shape.step_trained_tokens} trained tokens: "
        f"**{floor:.1f} trained tokens/s** |"
    )
    fractions = {name: rate / floor for name, rate in measured.items()}
    summary_lines = [
        f"- `{name}`: {rate:.1f} trained tokens/s = **{fractions[name]:.0%} of the floor**"
        for name, rate in measured.items()
    ]
    load = f", load average {roofline.load_average:.1f}" if roofline.load_average is not None else ""
    header = (
        f"Per row {shape.trained_tokens} trained of {shape.row_tokens} tokens (the mean of the rows), "
        f"{shape.rows_per_step} rows per optimizer step; medians of timings in turns, torch threads "
        f"{roofline.threads}{load}."
    )
    summary = {
        "shape": vars(shape),
        "kernels": kernels,
        "floor_step_seconds": roofline.floor_step_seconds,
        "floor_tokens_per_s": floor,
        "measured_tokens_per_s": measured,
        "fraction_of_floor": fractions,
        "threads": roofline.threads,
        "load_average": roofline.load_average,
    }
    return "\n".join([header, "", *lines, "", *summary_lines]), summary


def shape_of_rows(step_tokens: list[int], row_lengths: list[int], rows_per_step: int) -> StepShape:
    """The mean row of a run: trained tokens per row from each step's count, tokens per row from the rows."""
    rows = len(step_tokens) * rows_per_step
    return StepShape(
        trained_tokens=round(sum(step_tokens) / rows),
        row_tokens=round(statistics.mean(row_lengths)),
        rows_per_step=rows_per_step,
    )


# ---------------------------------------------------------------- alone


def main(argv: list[str] | None = None) -> int:
    import tempfile
    from pathlib import Path

    from benchmarks import bench
    from medsft.train import build_trainer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--recipe", default=bench.BENCH_RECIPE, help="the recipe (default: recipes/bench.yaml)"
    )
    parser.add_argument(
        "--rows", type=int, default=64, help="real validation rows the mean row is taken from"
    )
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timings per layout")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args, overrides = parser.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        setup = bench.prepare(args.recipe, bench.read_rows(args.rows), Path(work), 1, overrides)
        recipe = setup.base
        model = setup.new_model(recipe)
        trainer = build_trainer(recipe, model, setup.tokenizer, bench.recipe_data(recipe, setup), [])
        trained = bench.trained_tokens_per_item(trainer)
        lengths = [len(item["input_ids"]) for item in trainer.train_dataset]
    per_step = recipe.sft.per_device_train_batch_size * recipe.sft.gradient_accumulation_steps
    shape = StepShape(round(statistics.mean(trained)), round(statistics.mean(lengths)), per_step)
    # a fresh copy of the model: the trainer has switched activation checkpointing on in its own
    table, _ = roofline_table(measure(setup.new_model(recipe), shape, args.repeats), {})
    print(table)
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("roofline", main, sys.argv[1:]))
