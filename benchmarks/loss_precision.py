"""Precision and cost of medsft's bf16 loss against an fp32 reference, at Qwen3's real vocabulary.

    python benchmarks/loss_precision.py [--tokens 512] [--hidden 2048] [--timing-tokens 256] [--repeats 3]

Targets: the first `--tokens` tokens of real delicate_medical_r1_data rows (the shared folder's val.jsonl in
Qwen3's chat format, bundled tokenizer: 151,669 tokens). No trained weights are available offline, so the
output layer is random (bf16, std 0.02 as Qwen3 initialises it) and each hidden state is set so that the
target's probability spans what a trained model produces: 1 - p log-uniform over [1e-5, 1], other logits
~ N(0, 2^2).
Errors are reported per band of the fp32 reference probability.

Compared with the fp32 reference (logits, softmax and gradients in fp32 from the same bf16 values):
  plain     the model's own loss under bf16 autocast (bf16 logits, fp32 cross-entropy): what TRL computes
  previous  medsft's loss at commit --previous (bf16 softmax; loss and p - 1 read from the rounded p)
  current   medsft.trainer.trained_token_cross_entropy of this checkout (fp32 loss and target column)
Then the time of `previous` and `current` (forward + both gradients of one chunk, best of --repeats).
Needs a git checkout (for --previous) and the shared folder ($MEDSFT_SHARED).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
import types
from pathlib import Path

import torch

from medsft.conversion import convert_row
from medsft.model import load_bundled_tokenizer
from medsft.paths import shared_dir
from medsft.trainer import trained_token_cross_entropy

PREVIOUS_COMMIT = "28b7e89"  # the last commit whose loss read p - 1 from the bf16-rounded p
BANDS = [(0.0, 0.5), (0.5, 0.9), (0.9, 0.99), (0.99, 0.998), (0.998, 0.9999), (0.9999, 1.0)]


def previous_loss_function(commit: str):
    source = subprocess.run(
        ["git", "show", f"{commit}:medsft/trainer.py"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("previous_trainer")
    exec(compile(source, f"{commit}:medsft/trainer.py", "exec"), module.__dict__)
    return module.trained_token_cross_entropy


def real_targets(tokenizer, count: int) -> torch.Tensor:
    path = shared_dir() / "data" / "delicate_medical_r1_data" / "val.jsonl"
    ids: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        ids += tokenizer.apply_chat_template(convert_row(json.loads(line)), tokenize=True, return_dict=True)[
            "input_ids"
        ]
        if len(ids) >= count:
            return torch.tensor(ids[:count])
    raise SystemExit(f"{path} holds fewer than {count} tokens")


def make_case(targets: torch.Tensor, vocab: int, hidden: int, seed: int = 0):
    """bf16 hidden states and output weight whose softmax gives each target a chosen probability."""
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(vocab, hidden, generator=generator) * 0.02).bfloat16()
    w = weight.float()
    noise = torch.randn(len(targets), hidden, generator=generator)
    noise *= 2.0 / (noise @ w.t()).std(dim=1, keepdim=True)  # other logits ~ N(0, 2^2)
    one_minus_p = 10 ** (-5 * torch.rand(len(targets), generator=generator))
    logits = noise @ w.t()
    logits.scatter_(1, targets[:, None], -math.inf)
    wanted = torch.logsumexp(logits, dim=1) + torch.log((1 - one_minus_p) / one_minus_p)
    direction = w[targets] / (w[targets] ** 2).sum(dim=1, keepdim=True)
    states = noise + (wanted - (noise * w[targets]).sum(dim=1))[:, None] * direction
    return states.bfloat16(), weight


def reference(states, weight, targets):
    """fp32 loss per token and gradients of the summed loss, from the same bf16 values."""
    h, w = states.float(), weight.float()
    log_probs = torch.log_softmax(h @ w.t(), dim=-1)
    loss = -log_probs.gather(1, targets[:, None]).squeeze(1)
    grad_logits = log_probs.exp()
    grad_logits[torch.arange(len(targets)), targets] -= 1
    return loss, grad_logits @ w, grad_logits.t() @ h


def plain_autocast(states, weight, targets):
    h, w = states.float().requires_grad_(), weight.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = h @ w.t()
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    loss.sum().backward()
    return loss.detach(), h.grad, w.grad


def as_rows(states, targets):
    """One sequence of two positions per token: position 0 holds the state and predicts the target."""
    hidden = torch.stack([states, torch.zeros_like(states)], dim=1)
    labels = torch.stack([torch.full_like(targets, -100), targets], dim=1)
    return hidden, labels


def medsft_path(loss_function, states, weight, targets, per_token: bool = True):
    """(losses per token, hidden gradient, weight gradient) of summed-loss training, bf16 inputs."""
    hidden, labels = as_rows(states, targets)
    hidden, w = hidden.requires_grad_(), weight.clone().requires_grad_()
    total, _ = loss_function(hidden, w, labels, num_items_in_batch=1)
    total.backward()
    losses = None
    if per_token:
        with torch.no_grad():
            losses = torch.stack(
                [
                    loss_function(hidden[i : i + 1], weight, labels[i : i + 1], num_items_in_batch=1)[0]
                    for i in range(len(targets))
                ]
            )
    return losses, hidden.grad[:, 0].float(), w.grad.float()


def band_report(name, losses, grad_hidden, ref_loss, ref_hidden, ref_p):
    token_error = (grad_hidden - ref_hidden).norm(dim=1) / ref_hidden.norm(dim=1)
    lines = []
    for low, high in BANDS:
        band = (ref_p >= low) & (ref_p < high)
        if not bool(band.any()):
            continue
        loss_error = (losses[band].float() - ref_loss[band]).abs()
        lines.append(
            f"  {name:8} p in [{low}, {high}) {int(band.sum()):4d} tokens:"
            f" loss error mean {float(loss_error.mean()):.2e}"
            f" max {float(loss_error.max()):.2e} | token's hidden-gradient error median"
            f" {float(token_error[band].median()):.2e} max {float(token_error[band].max()):.2e}"
        )
    return lines


def report_precision(previous_function, states, weight, targets) -> None:
    ref_loss, ref_hidden, ref_weight = reference(states, weight, targets)
    ref_p = (-ref_loss).exp()
    paths = {
        "plain": lambda: plain_autocast(states, weight, targets),
        "previous": lambda: medsft_path(previous_function, states, weight, targets),
        "current": lambda: medsft_path(trained_token_cross_entropy, states, weight, targets),
    }
    for name, run_path in paths.items():
        losses, grad_hidden, grad_weight = run_path()  # one path's gradients in memory at a time
        print(
            f"{name}: mean loss error {float((losses.float() - ref_loss).mean()):+.2e};"
            f" relative gradient error: hidden {relative(grad_hidden - ref_hidden, ref_hidden):.2e},"
            f" output weight {relative(grad_weight - ref_weight, ref_weight):.2e}"
        )
        print("\n".join(band_report(name, losses, grad_hidden, ref_loss, ref_hidden, ref_p)))


def best_times(functions: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each function, the functions taking turns (a busy machine slows both alike)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=512, help="target tokens for the precision figures")
    parser.add_argument("--hidden", type=int, default=2048, help="hidden size (Qwen3-1.7B: 2048)")
    parser.add_argument("--timing-tokens", type=int, default=256, help="tokens in the timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--previous", default=PREVIOUS_COMMIT, help="commit of the previous loss")
    parser.add_argument("--timing-only", action="store_true", help="skip the precision figures")
    args = parser.parse_args(argv)
    previous_function = previous_loss_function(args.previous)
    tokenizer = load_bundled_tokenizer()
    vocab = len(tokenizer)
    targets = real_targets(tokenizer, args.tokens)
    states, weight = make_case(targets, vocab, args.hidden)
    print(
        f"vocabulary {vocab}, hidden {args.hidden}, {len(targets)} real target tokens,"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if not args.timing_only:
        report_precision(previous_function, states, weight, targets)
    timed_states, timed_targets = states[: args.timing_tokens], targets[: args.timing_tokens]
    print(
        f"time of one chunk of {len(timed_targets)} tokens (forward + both gradients),"
        f" best of {args.repeats}:"
    )
    functions = {"previous": previous_function, "current": trained_token_cross_entropy}
    seconds = best_times(
        {
            name: lambda function=function: medsft_path(
                function, timed_states, weight, timed_targets, per_token=False
            )
            for name, function in functions.items()
        },
        args.repeats,
    )
    for name, value in seconds.items():
        print(f"  {name}: {value:.3f} s")
    print(f"  current / previous: {seconds['current'] / seconds['previous']:.3f}")
    return 0


def relative(error: torch.Tensor, scale: torch.Tensor) -> float:
    return float(error.norm() / scale.norm())


if __name__ == "__main__":
    raise SystemExit(main())
