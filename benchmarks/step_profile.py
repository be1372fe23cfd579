"""Where one training step's time goes, kernel class by kernel class, and what each class could cost at best.

`StepProfiler` profiles one optimizer step of a Qwen3 training run with `torch.profiler` and labels every
operation with the kernel class it belongs to:

- forward operations by the module that runs them (forward hooks open a `record_function` range per module:
  the q/k/v/o and MLP products, RMSNorm, rotary embedding, SiLU·gate, the embedding, the decoder layer's own
  residual adds, the output layer and its loss), and as `recompute` when a module runs again inside the
  backward pass (activation checkpointing);
- backward operations by the forward operation that created their autograd node (the profiler's
  `sequence_nr` links them), so a backward product is counted with its forward module;
- the attention kernel (sdpa) by its operator name, the optimizer step by its `Optimizer.step` range, the
  adds of gradient accumulation by autograd's `AccumulateGrad`.

Each operation's own (self) time is added to its class, so the classes add up to the time the profiled
operations took; the rest of the step's wall time is Python and trainer work between operations.

The floor of a class (`floors`): matrix products at the speed their shape reaches in its fastest layout on
this machine, timed in isolation (`product_speeds`); the attention kernel as timed in isolation at the same
row lengths; everything else (elementwise and memory-bound work) at the least memory traffic it needs (each
input read once and each output written once, in bf16) over the machine's measured copy bandwidth.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile, record_function

PRODUCT_OPS = {"aten::mm", "aten::addmm", "aten::bmm"}
ATTENTION_OPS = ("flash_attention", "scaled_dot_product", "_efficient_attention")
LABEL_PREFIX = "medsft::"
CLIP_OPS = {
    "aten::_foreach_norm",
    "aten::linalg_vector_norm",
    "aten::_foreach_mul_",
    "aten::stack",
    "aten::clamp",
}

ATTENTION_PRODUCTS = "attention projections q, k, v, o"
MLP_PRODUCTS = "MLP projections gate, up, down"
OUTPUT_PRODUCTS = "output layer products"
ATTENTION_KERNEL = "attention kernel (sdpa)"
RMSNORM = "RMSNorm"
ROTARY = "rotary embedding"
SILU_GATE = "SiLU·gate"
EMBEDDING = "embedding"
RESIDUAL = "residual adds, reshapes"
LOSS = "loss: softmax, cross-entropy"
GRAD_ACCUMULATION = "gradient accumulation adds"
OPTIMIZER = "optimizer: clip, AdamW, zero"
OTHER = "other"
CLASSES = (
    ATTENTION_PRODUCTS,
    MLP_PRODUCTS,
    OUTPUT_PRODUCTS,
    ATTENTION_KERNEL,
    RMSNORM,
    ROTARY,
    SILU_GATE,
    EMBEDDING,
    RESIDUAL,
    LOSS,
    GRAD_ACCUMULATION,
    OPTIMIZER,
    OTHER,
)
PRODUCT_CLASSES = {ATTENTION_PRODUCTS: ATTENTION_PRODUCTS, MLP_PRODUCTS: MLP_PRODUCTS, LOSS: OUTPUT_PRODUCTS}


# Vocabulary rows of the output layer timed for its floor (the layer runs its products in such blocks).
VOCABULARY_BLOCK = 8192


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def projection_widths(config) -> tuple[int, int]:
    """Output widths of the query and of the key/value projections."""
    return head_dim(config) * config.num_attention_heads, head_dim(config) * config.num_key_value_heads


def module_class(name: str, module: torch.nn.Module) -> str | None:
    """The kernel class of the operations a module runs itself (its children label their own)."""
    leaf = name.rsplit(".", 1)[-1]
    kind = type(module).__name__
    if leaf in {"q_proj", "k_proj", "v_proj", "o_proj"}:
        return ATTENTION_PRODUCTS
    if leaf in {"gate_proj", "up_proj", "down_proj"}:
        return MLP_PRODUCTS
    if leaf == "lm_head":
        return LOSS  # its product is counted as an output-layer product
    if kind.endswith("RMSNorm"):
        return RMSNORM
    if kind.endswith("RotaryEmbedding"):
        return ROTARY
    if kind.endswith("MLP"):
        return SILU_GATE
    if kind.endswith("Attention"):
        return ROTARY  # what the attention module runs itself besides its projections and kernel: rotary
    if isinstance(module, torch.nn.Embedding):
        return EMBEDDING
    if kind.endswith("DecoderLayer") or kind.endswith("Model") and not kind.endswith("CausalLM"):
        return RESIDUAL
    if kind.endswith("CausalLM") or name == "":
        return (
            LOSS  # the output layer's loss, as the model's own forward or medsft's trained-token loss runs it
        )
    return None


def _in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


def label_modules(model: torch.nn.Module) -> list:
    """Forward hooks that open a profiler range named after each module's kernel class; returns the hooks."""
    handles = []
    for name, module in model.named_modules():
        kind = module_class(name, module)
        if kind is None:
            continue

        def enter(module, args, kind=kind):
            direction = "recompute" if _in_backward() else "forward"
            scope = record_function(f"{LABEL_PREFIX}{kind}::{direction}")
            scope.__enter__()
            module.__dict__.setdefault("_medsft_scopes", []).append(scope)

        def leave(module, args, output):
            scopes = module.__dict__.get("_medsft_scopes")
            if scopes:
                scopes.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(
            module.register_forward_hook(leave, always_call=True)
        )  # closes after an early stop too
    return handles


@dataclass
class ClassTime:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # direction -> s
    flops: float = 0.0
    # (out, in, product kind) of a linear layer's weight -> FLOPs of its products of that kind
    product_shapes: dict[tuple[int, int, str], float] = field(default_factory=lambda: defaultdict(float))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass
class StepBreakdown:
    wall_seconds: float
    classes: dict[str, ClassTime]

    @property
    def profiled_seconds(self) -> float:
        return sum(entry.total for entry in self.classes.values())

    def as_json(self) -> dict:
        return {
            "wall_seconds": self.wall_seconds,
            "classes": {
                name: {
                    "seconds": dict(entry.seconds),
                    "flops": entry.flops,
                    "product_shapes": {
                        f"{out}x{in_} {kind}": flops
                        for (out, in_, kind), flops in entry.product_shapes.items()
                    },
                }
                for name, entry in self.classes.items()
            },
        }


def _label(event) -> tuple[str, str] | None:
    if event.name.startswith(LABEL_PREFIX):
        kind, direction = event.name[len(LABEL_PREFIX) :].rsplit("::", 1)
        return kind, direction
    return None


def _is_autograd_node(name: str) -> bool:
    return "Backward" in name or name.startswith("autograd::engine::evaluate_function")


def _product_flops(event) -> tuple[float, tuple[int, int, int] | None]:
    shapes = [shape for shape in (event.input_shapes or []) if shape]
    if event.name == "aten::addmm" and len(shapes) >= 3:
        shapes = shapes[1:3]
    if len(shapes) < 2 or len(shapes[0]) < 2 or len(shapes[1]) < 2:
        return 0.0, None
    (*batch, rows, inner), (*_, cols) = shapes[0], shapes[1]
    flops = 2.0 * rows * inner * cols
    for size in batch:
        flops *= size
    return flops, (rows, inner, cols)


def classify(events, model_dims: set[int]) -> dict[str, ClassTime]:
    """Self time of every event, added to the class of the range, autograd node or operator it belongs to."""
    forward_of_sequence: dict[int, str] = {}
    ordered = sorted(events, key=lambda event: event.time_range.start)
    context: dict[int, tuple[str, str]] = {}  # id(event) -> (class, direction)

    def resolve(event) -> tuple[str, str]:
        key = id(event)
        if key in context:
            return context[key]
        found: tuple[str, str] = (OTHER, "forward")
        label = _label(event)
        if label:
            found = label
        elif event.name.startswith("Optimizer.") or "clip_grad" in event.name or "zero_grad" in event.name:
            found = (OPTIMIZER, "step")
        elif "AccumulateGrad" in event.name:
            found = (GRAD_ACCUMULATION, "backward")
        elif _is_autograd_node(event.name) and event.sequence_nr in forward_of_sequence:
            found = (forward_of_sequence[event.sequence_nr], "backward")
        elif event.cpu_parent is not None:
            found = resolve(event.cpu_parent)
        if found[0] == OTHER and event.name in CLIP_OPS:
            found = (OPTIMIZER, "step")  # gradient clipping runs outside any range, in these operators
        if event.name.startswith("aten::") and any(part in event.name for part in ATTENTION_OPS):
            found = (ATTENTION_KERNEL, found[1])
        context[key] = found
        return found

    classes: dict[str, ClassTime] = {name: ClassTime() for name in CLASSES}
    for event in ordered:
        kind, direction = resolve(event)
        if direction in {"forward", "recompute"} and event.sequence_nr >= 0 and not _label(event):
            forward_of_sequence.setdefault(event.sequence_nr, kind)
        seconds = event.self_cpu_time_total / 1e6
        if event.name in PRODUCT_OPS:
            flops, shape = _product_flops(event)
            kind = PRODUCT_CLASSES.get(kind, kind)
            entry = classes[kind]
            entry.flops += flops
            if shape:
                rows, inner, cols = shape
                # a weight gradient contracts over the tokens: its inner size is none of the model's sizes
                if inner not in model_dims:  # contracts over the tokens: g^T x
                    entry.product_shapes[(rows, cols, "weight gradient")] += flops
                elif direction == "backward":  # g W
                    entry.product_shapes[(inner, cols, "input gradient")] += flops
                else:  # x W^T, in the forward pass or its recomputation
                    entry.product_shapes[(cols, inner, direction)] += flops
            entry.seconds[direction] += seconds
        else:
            classes[kind].seconds[direction] += seconds
    return classes


class StepProfiler:
    """Profiles one chosen optimizer step of a Trainer (a TrainerCallback's two hooks call `start`/`stop`)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        config = getattr(model, "config", None)
        dims = {
            getattr(config, name, None)
            for name in ("hidden_size", "intermediate_size", "vocab_size")
            if config is not None
        }
        if config is not None:
            dims |= set(projection_widths(config))
        self.model_dims = {dim for dim in dims if dim}
        self._profile = None
        self._handles: list = []
        self._started = 0.0
        self.breakdown: StepBreakdown | None = None

    def start(self) -> None:
        self._handles = label_modules(self.model)
        self._profile = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        self._profile.__enter__()
        self._started = time.perf_counter()

    def stop(self) -> StepBreakdown:
        wall = time.perf_counter() - self._started
        self._profile.__exit__(None, None, None)
        for handle in self._handles:
            handle.remove()
        events = self._profile.events()
        self.breakdown = StepBreakdown(wall, classify(events, self.model_dims))
        self._profile = None
        return self.breakdown


# ---------------------------------------------------------------- floors


def _best_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second a large bf16 copy moves (read + write), the memory roof of elementwise work."""
    source = torch.ones(megabytes * 2**20 // 2, dtype=torch.bfloat16)
    target = torch.empty_like(source)
    seconds = _best_seconds(lambda: target.copy_(source), repeats)
    return 2 * source.numel() * source.element_size() / seconds


def _linear_layouts(weight: torch.Tensor, inputs: torch.Tensor, grads: torch.Tensor) -> dict[str, dict]:
    """The layouts a linear layer's three products can take: kind -> layout name -> a call."""
    weight_t = weight.t().contiguous()
    return {
        "forward": {
            "x @ W.T": lambda: inputs @ weight.t(),
            "x @ contiguous(W.T)": lambda: inputs @ weight_t,
        },
        "input gradient": {
            "g @ W": lambda: grads @ weight,
            "g @ contiguous(W.T).T": lambda: grads @ weight_t.t(),
        },
        "weight gradient": {
            "g.T @ x": lambda: grads.t() @ inputs,
            "(x.T @ g).T": lambda: (inputs.t() @ grads).t(),
        },
    }


def product_speeds(shapes: list[tuple[int, int]], tokens: int, repeats: int = 3) -> dict[tuple, dict]:
    """FLOP/s of the three products of a linear layer with weight (out, in) at `tokens` rows, in bf16, each
    in its fastest layout: forward (x W^T, or x (W^T contiguous)), input gradient (g W, or g (W^T)^T from a
    contiguous W^T) and weight gradient (g^T x, or (x^T g)^T)."""
    generator = torch.Generator().manual_seed(0)
    speeds: dict[tuple, dict] = {}
    for out_features, in_features in shapes:
        weight = torch.randn(out_features, in_features, generator=generator).to(torch.bfloat16)
        inputs = torch.randn(tokens, in_features, generator=generator).to(torch.bfloat16)
        grads = torch.randn(tokens, out_features, generator=generator).to(torch.bfloat16)
        flops = 2.0 * tokens * in_features * out_features
        for kind, options in _linear_layouts(weight, inputs, grads).items():
            timed = {name: _best_seconds(run, repeats) for name, run in options.items()}
            best = min(timed, key=timed.__getitem__)
            speeds[(out_features, in_features, kind)] = {
                "layout": best,
                "flops_per_s": flops / timed[best],
                "layouts": {name: flops / seconds for name, seconds in timed.items()},
            }
    return speeds


def _attention_at(length: int, heads: int, kv_heads: int, width: int, repeats: int) -> tuple[float, float]:
    """Seconds of one sdpa call forward and of its backward alone, at one row length."""
    query = torch.randn(1, heads, length, width, dtype=torch.bfloat16, requires_grad=True)
    key = torch.randn(1, kv_heads, length, width, dtype=torch.bfloat16, requires_grad=True)
    value = torch.randn(1, kv_heads, length, width, dtype=torch.bfloat16, requires_grad=True)

    def run_forward():
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, enable_gqa=True
        )

    grad = torch.randn_like(run_forward())
    forward = _best_seconds(run_forward, repeats)
    both = _best_seconds(lambda: torch.autograd.grad(run_forward(), (query, key, value), grad), repeats)
    return forward, max(both - forward, 0.0)


def attention_seconds(config, row_lengths: list[int], repeats: int = 3) -> dict[str, float]:
    """The sdpa kernel of every layer, forward and backward, at these row lengths, timed in isolation."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    timed = [_attention_at(length, heads, kv_heads, head_dim(config), repeats) for length in row_lengths]
    layers = config.num_hidden_layers
    return {
        "forward": sum(forward for forward, _ in timed) * layers,
        "backward": sum(backward for _, backward in timed) * layers,
    }
