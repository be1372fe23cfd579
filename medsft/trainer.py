"""A faster SFTTrainer: the loss is computed only at trained positions, the gradient built in the same pass.

Why: with a 151,669-token vocabulary the output layer and its cross-entropy are most of the work of a small or
medium model. The plain causal-LM loss builds logits for every position (prompt included), upcasts them to
fp32 and runs log-softmax forward and backward as separate passes over `tokens x vocab` floats. TRL 1.16's
fused LM head avoids the full logits but, off CUDA, scores every position (not only the trained ones),
recomputes the projection in the backward (4 matrix products instead of 3), upcasts both gradient products to
fp32 and adds entropy / top-1 passes for its logged metrics.

`trained_token_cross_entropy` gathers the hidden states whose next-token label is trained, projects them in
chunks of tokens, takes one softmax per chunk and turns it into the logits gradient in place (softmax -
one-hot), so the backward needs no second projection. The loss and gradients equal the masked cross-entropy of
the plain path (tests/test_speed_equivalence.py); measured speed-ups are in docs/benchmarks.md.
"""

from __future__ import annotations

import logging
import threading
import types
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.distributed.tensor import DTensor
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.modeling_outputs import CausalLMOutputWithPast
from trl import SFTTrainer

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Tokens per projection chunk: a chunk's logits + softmax take chunk x vocab x 2 x (2 or 4) bytes (bf16/fp32);
# on CPU half that, the softmax taken in place in a buffer kept between calls.
DEFAULT_TOKENS_PER_CHUNK = 2048
# Below this probability -log(p) loses precision (fp32 subnormals); such rows are recomputed with logsumexp.
_SMALLEST_SAFE_PROBABILITY = 1e-30


# Tokens per matrix product into the logits workspace on CPU: a product and its softmax then share the cache
# (256 and 512 measured alike at the bench shape, one product of every token slower: benchmarks/roofline.py).
_TOKENS_PER_PRODUCT = 256
# Vocabulary rows per block of the weight gradient's product on CPU (fastest measured at the bench shape).
_VOCAB_ROWS_PER_PRODUCT = 8192
_workspace = threading.local()


def _logits_workspace(rows: int, vocab: int, dtype: torch.dtype) -> torch.Tensor:
    """A (rows, vocab) CPU buffer reused across calls: a fresh buffer of this size costs its page faults every
    time (a third of the logits product's time at the bench shape). One per thread."""
    buffer = getattr(_workspace, "buffer", None)
    if buffer is None or buffer.dtype != dtype or buffer.numel() < rows * vocab:
        _workspace.buffer = None  # frees the old one before the new one is allocated
        buffer = _workspace.buffer = torch.empty(rows * vocab, dtype=dtype)
    return buffer[: rows * vocab].view(rows, vocab)


def release_logits_workspace() -> None:
    """Frees this thread's logits buffer (up to 2048 x vocabulary entries: 0.62 GB in bf16 for Qwen3)."""
    _workspace.buffer = None


def _softmax_of_logits(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """softmax(hidden @ weight.T). On CPU in the reused workspace, a few hundred tokens at a time: each
    product, then its softmax in place while the product's rows are still in the cache."""
    if hidden.device.type != "cpu":
        return torch.softmax(hidden @ weight.t(), dim=-1)
    probs = _logits_workspace(hidden.shape[0], weight.shape[0], hidden.dtype)
    for start in range(0, hidden.shape[0], _TOKENS_PER_PRODUCT):
        rows = probs[start : start + _TOKENS_PER_PRODUCT]
        torch.mm(hidden[start : start + _TOKENS_PER_PRODUCT], weight.t(), out=rows)
        torch.softmax(rows, dim=-1, out=rows)
    return probs


def _weight_gradient(probs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """probs.T @ hidden, in the weight's own (vocab, hidden) layout: the faster h.T @ P would hand autograd a
    transposed gradient, and adding that to the tied embedding's gradient and across micro-batches costs more
    than it saves. On CPU in blocks of the vocabulary: each block of the fresh output is written in cache."""
    if probs.device.type != "cpu":
        return probs.t() @ hidden
    grad = torch.empty(probs.shape[1], hidden.shape[1], dtype=hidden.dtype)
    for start in range(0, probs.shape[1], _VOCAB_ROWS_PER_PRODUCT):
        end = start + _VOCAB_ROWS_PER_PRODUCT
        torch.mm(probs[:, start:end].t(), hidden, out=grad[start:end])
    return grad


class _TrainedTokenCrossEntropy(torch.autograd.Function):
    """`scale` x summed NLL of `targets` under `softmax(hidden @ weight.T)`; gradients built in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, scale, compute_dtype, tokens_per_chunk, needs_grad):
        num_tokens, vocab = hidden.shape[0], weight.shape[0]
        weight_c = weight.to(compute_dtype)
        want_hidden_grad, want_weight_grad = needs_grad
        grad_hidden = torch.empty_like(hidden) if want_hidden_grad else None
        grad_weight = None
        losses = torch.empty(num_tokens, dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, num_tokens, tokens_per_chunk):
                end = min(start + tokens_per_chunk, num_tokens)
                hidden_c = hidden[start:end].to(compute_dtype)
                target = targets[start:end]
                # One softmax kernel in the compute dtype, in place over the logits: under bf16 the logits
                # gradient is bf16 either way (as in the plain path). The target's own column is redone in
                # fp32: 1 - p_target is the sum of the other columns (accumulated in fp32), exact to the
                # dtype's relative precision where p_target itself rounds to 1 (bf16 does above 1 - 2^-9: the
                # token's gradient would be 0).
                probs = _softmax_of_logits(hidden_c, weight_c)
                target_index = torch.arange(end - start, device=hidden.device) * vocab + target
                target_prob = probs.view(-1)[target_index].float()
                probs.view(-1)[target_index] = 0
                others = probs.sum(dim=-1).float()
                loss = torch.where(target_prob > 0.5, -torch.log1p(-others), -torch.log(target_prob))
                tiny = target_prob < _SMALLEST_SAFE_PROBABILITY
                if bool(tiny.any()):
                    rows = (hidden_c[tiny] @ weight_c.t()).float()
                    picked = rows.gather(1, target[tiny].unsqueeze(1)).squeeze(1)
                    loss[tiny] = torch.logsumexp(rows, dim=-1) - picked
                losses[start:end] = loss
                if not (want_hidden_grad or want_weight_grad):
                    continue
                # d(-log p_target)/d logits = softmax - one_hot(target), in place; scale the small operands
                probs.view(-1)[target_index] = (-others).to(probs.dtype)
                if grad_hidden is not None:  # (W.T @ P.T).T: the fastest orientation of P @ W measured on CPU
                    grad_hidden[start:end] = (weight_c.t() @ probs.t()).t().mul_(scale).to(hidden.dtype)
                if want_weight_grad:
                    chunk_grad = _weight_gradient(probs, hidden_c * scale)
                    if grad_weight is None:
                        grad_weight = chunk_grad.to(torch.float32 if num_tokens > end else weight.dtype)
                    else:
                        grad_weight.add_(chunk_grad)
                del probs
        if want_weight_grad and grad_weight is None:  # no trained token
            grad_weight = torch.zeros_like(weight)
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0),
            grad_weight if grad_weight is not None else torch.empty(0),
        )
        ctx.has_grads = (grad_hidden is not None, grad_weight is not None)
        ctx.weight_dtype = weight.dtype
        return losses.sum() * scale

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        has_hidden, has_weight = ctx.has_grads
        unit = (
            grad_output.numel() == 1 and float(grad_output) == 1.0
        )  # the usual case: skip a pass over the weight
        if has_hidden and not unit:
            grad_hidden = grad_hidden * grad_output.to(grad_hidden.dtype)
        if has_weight and not unit:
            grad_weight = grad_weight * grad_output
        return (
            grad_hidden if has_hidden else None,
            grad_weight.to(ctx.weight_dtype) if has_weight else None,
            None,
            None,
            None,
            None,
            None,
        )


def trained_token_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    tokens_per_chunk: int = DEFAULT_TOKENS_PER_CHUNK,
    head_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-LM loss from the last hidden states, projecting only positions whose next token is trained.

    hidden_states: (batch, seq, hidden); labels: (batch, seq), -100 where not trained, unshifted as the
    model's own loss takes them. Returns (loss, number of trained tokens); the loss is the summed NLL divided
    by `num_items_in_batch` (trained tokens of the whole accumulated batch, as `Trainer` passes it) or by
    their count.
    head_dtype: the projection's dtype (default: the autocast dtype, else the hidden states' dtype).
    """
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE_INDEX
    selected = hidden_states[:, :-1][mask]
    targets = shifted_labels[mask]
    num_trained = mask.sum()
    compute_dtype = head_dtype or (
        torch.get_autocast_dtype(selected.device.type)
        if torch.is_autocast_enabled(selected.device.type)
        else selected.dtype
    )
    needs_grad = (
        torch.is_grad_enabled() and selected.requires_grad,
        torch.is_grad_enabled() and weight.requires_grad,
    )
    denominator = num_trained if num_items_in_batch is None else num_items_in_batch
    scale = 1.0 / max(float(denominator), 1.0)
    loss = _TrainedTokenCrossEntropy.apply(
        selected, weight, targets, scale, compute_dtype, tokens_per_chunk, needs_grad
    )
    if selected.shape[0] == 0:
        # keeps the graph connected: backward() works on a batch without trained tokens
        loss = loss + hidden_states.sum() * 0.0
    return loss, num_trained


def plain_causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference: mean masked next-token cross-entropy over full fp32 logits, as `model(labels=...)`."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def head_module_cross_entropy(
    lm_head: torch.nn.Module,
    hidden_states: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of `trained_token_cross_entropy` through the output layer's own forward and autograd.

    For an output layer whose weight is sharded outside its forward (an FSDP2 unit of its own): calling the
    module lets its hooks gather the weight and reduce-scatter its gradient. Costs the trained positions'
    full fp32 logits, as the model's own loss does.
    """
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE_INDEX
    num_trained = mask.sum()
    logits = lm_head(hidden_states[:, :-1][mask]).float()
    summed = torch.nn.functional.cross_entropy(logits, shifted_labels[mask], reduction="sum")
    denominator = num_trained if num_items_in_batch is None else num_items_in_batch
    return summed / max(float(denominator), 1.0), num_trained


@dataclass
class TrainedTokenLossOutput(CausalLMOutputWithPast):
    """The fast loss as a model output: DDP looks for the tensors to trace in a ModelOutput (never in an
    arbitrary object), so with `find_unused_parameters` it finds every parameter the loss used."""

    num_trained: torch.Tensor | None = None


def add_trained_token_loss(
    model: torch.nn.Module,
    tokens_per_chunk: int = DEFAULT_TOKENS_PER_CHUNK,
    head_dtype: torch.dtype | None = None,
) -> None:
    """Let `model(..., labels=..., trained_token_loss=True)` return the fast loss without building logits.

    The model's forward is patched (not bypassed), so DDP / FSDP / PEFT wrappers still see the call. Without
    the flag the original forward runs, so evaluation and generation are unchanged.
    """
    original_forward = model.forward

    def forward(self, *args, trained_token_loss=False, labels=None, num_items_in_batch=None, **kwargs):
        if not trained_token_loss:
            if labels is not None:
                kwargs["labels"] = labels
            if num_items_in_batch is not None:
                kwargs["num_items_in_batch"] = num_items_in_batch
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        backbone = self.get_decoder() if hasattr(self, "get_decoder") else self.base_model
        hidden = backbone(*args, **kwargs).last_hidden_state
        lm_head = self.get_output_embeddings()
        if getattr(lm_head, "bias", None) is not None:
            raise ValueError("trained_token_loss supports output layers without bias (Qwen3 has none).")
        hidden, labels = hidden.to(lm_head.weight.device), labels.to(lm_head.weight.device)
        if isinstance(lm_head.weight, DTensor):
            # Sharded here (FSDP2 gathers the head only inside its own forward when it is a unit of its own;
            # accelerate >= 1.15 groups it with the final norm, so Qwen3 does not come here): a matrix product
            # with a shard would be wrong, so the loss goes through the module.
            if not getattr(self, "_medsft_sharded_head_logged", False):
                log.warning(
                    "the output layer's weight is sharded outside its forward (an FSDP2 unit of its own): "
                    "the loss runs through the layer's forward (full logits of the trained positions, slower)"
                )
                self._medsft_sharded_head_logged = True
            loss, num_trained = head_module_cross_entropy(lm_head, hidden, labels, num_items_in_batch)
        else:
            loss, num_trained = trained_token_cross_entropy(
                hidden, lm_head.weight, labels, num_items_in_batch, tokens_per_chunk, head_dtype
            )
        return TrainedTokenLossOutput(loss=loss, num_trained=num_trained)

    model.forward = types.MethodType(forward, model)


class FastSFTTrainer(SFTTrainer):
    """SFTTrainer whose training loss is `trained_token_cross_entropy` (same value, fewer and cheaper passes).

    Entropy and token-accuracy logging (each a pass over tokens x vocabulary) are dropped from training;
    `num_tokens` is still logged. Evaluation with logits (`prediction_loss_only=False`), DFT loss, label
    smoothing, a custom `compute_loss_func`, MoE aux losses, context / sequence parallel batches and DeepSpeed
    ZeRO-3 use SFTTrainer's own path.
    """

    def __init__(
        self,
        *args,
        tokens_per_chunk: int = DEFAULT_TOKENS_PER_CHUNK,
        head_dtype: torch.dtype | None = None,
        compile_layers: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_trained_token_loss(target, tokens_per_chunk, head_dtype)
        if compile_layers:  # regional compilation: each decoder block once, any sequence length
            for layer in target.get_decoder().layers:
                layer.compile(dynamic=True)

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:  # what follows training (saving, evaluation, generation) does not need the loss's buffer
            release_logits_workspace()

    def _fast_path_applies(self, inputs: dict, return_outputs: bool) -> bool:
        return (
            not return_outputs
            and "labels" in inputs
            and "shift_labels" not in inputs
            and self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and not self.aux_loss_enabled
            # ZeRO-3 gathers a weight only inside its own module's forward; the fast loss reads the output
            # layer's weight directly, so sharded runs use SFTTrainer's loss.
            and not is_deepspeed_zero3_enabled()
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._fast_path_applies(inputs, return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs = {**inputs, "use_cache": False}
        outputs = model(**inputs, trained_token_loss=True, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if mode == "train":
            if "attention_mask" in inputs:
                local_tokens = inputs["attention_mask"].sum()
            else:
                local_tokens = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
            self._total_train_tokens += (
                int(self.accelerator.gather_for_metrics(local_tokens).sum()) // self._tp_size
            )
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


def autocast_context(device_type: str, dtype: torch.dtype | None):
    """bf16 autocast when asked for, nothing otherwise (used by the benchmarks' manual loops)."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext()
