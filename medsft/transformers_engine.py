"""The transformers backend of medsft.engine: continuous batching over a causal LM, on any device.

One thread decodes every active request together, one token step at a time. A request that arrives while
others are decoding joins the batch at the next step (its prompt is prefilled and its KV cache appended to the
batch's), a finished or cancelled request leaves it at once, and each request samples with its own settings
and seed. The thread starts with the first request and ends as soon as no request is waiting or decoding, so
an idle engine holds no model thread. Requests beyond `max_batch_size` wait for a free row.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from medsft.chat_format import PAD_TOKEN
from medsft.engine import (
    DEFAULT_MAX_BATCH_SIZE,
    END,
    Engine,
    GenerationError,
    Request,
    deliver,
)
from medsft.model import ModelSourceError

log = logging.getLogger(__name__)

BATCH_THREAD_NAME = "medsft-batch"


QUIET_WHILE_LOADING = (
    "transformers.modeling_utils",  # a many-line table of the weights it could not load: said in one line
    "transformers.distributed.tensor_parallel",  # "layers were not sharded", though nothing is sharded here
)


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Load without transformers' loading bar and load report; weights_config_mismatch says what matters."""
    loggers = [logging.getLogger(name) for name in QUIET_WHILE_LOADING]
    levels = [logger.level for logger in loggers]
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars_were_on:
            transformers_logging.enable_progress_bar()


def weights_config_mismatch(loading: dict) -> str | None:
    """What of the model config.json describes the weights do not fill (transformers' loading info), or
    None. A weight left out would be drawn at random, and the model would answer nonsense."""
    problems = []
    if missing := sorted(loading.get("missing_keys") or ()):
        problems.append(f"{len(missing)} weights missing, e.g. {missing[0]}")
    if mismatched := sorted(loading.get("mismatched_keys") or ()):
        name, saved, expected = mismatched[0]
        problems.append(
            f"{len(mismatched)} weights of another shape, e.g. {name}: {tuple(saved)} saved, "
            f"{tuple(expected)} in config.json"
        )
    return "; ".join(problems) or None


@dataclass(eq=False)
class _Row:
    """A request's place in the batch."""

    request: Request
    rng: torch.Generator | None = None
    generated: int = 0
    position: int = 0  # position id of the next token fed to the model
    last_token: int = -1  # sampled, not yet fed
    finished: bool = False

    @property
    def gone(self) -> bool:
        return self.finished or self.request.cancelled


class TransformersEngine(Engine):
    """A transformers causal LM with its tokenizer, decoding requests together (see the module's doc)."""

    backend = "hf"

    def __init__(
        self,
        model,
        tokenizer,
        device: str,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        model_dir: Path | None = None,
        max_model_len: int | None = None,
    ):
        config = getattr(model, "config", None)
        context = int(getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length)
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        super().__init__(
            tokenizer, device, min(context, max_model_len or context), max_batch_size, model_dir, configured
        )
        self.model = model
        self._device = model.device  # where the batch's tensors live
        self.pad_token_id = tokenizer.pad_token_id
        self._lock = threading.Lock()
        self._waiting: list[_Row] = []
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache length]: 0 for left padding
        _check_cache_layout(model)
        # transformers 5 renamed the forward's `past_key_values` to `cache`; the cache is updated in place
        self._cache_argument = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        device: str,
        dtype: torch.dtype,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_model_len: int | None = None,
    ) -> TransformersEngine:
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
            with quiet_load_report():
                causal_lm, loading = AutoModelForCausalLM.from_pretrained(
                    model_dir, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
                )
        except Exception as error:  # no model files, damaged ones, a config.json that cannot describe them
            reason = " ".join(str(error).split())[:300]
            raise ModelSourceError(
                f"{model_dir} is not a loadable model folder ({type(error).__name__}: {reason}). Pass a "
                "folder with config.json, the weights and the tokenizer files, such as output/<recipe>/final."
            ) from error
        if problem := weights_config_mismatch(loading):
            raise ModelSourceError(
                f"{model_dir}: config.json does not match the weights ({problem}). Pass the folder as "
                "training saved it (config.json and model.safetensors written together)."
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = PAD_TOKEN
        causal_lm = causal_lm.to(device)
        causal_lm.eval()
        return cls(causal_lm, tokenizer, device, max_batch_size, model_dir, max_model_len)

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, request: Request) -> None:
        if self.model is None:
            raise GenerationError("The engine is closed.")
        rng = None
        if request.settings.do_sample and request.settings.seed is not None:
            rng = torch.Generator(device=self._device)
            rng.manual_seed(request.settings.seed)
        with self._lock:
            self._waiting.append(_Row(request, rng))
            if self._thread is None:
                # not a daemon: the interpreter waits for it at exit (it ends once its requests are done or
                # cancelled, as every caller's ending does); a daemon thread still freeing tensors while the
                # interpreter finalises aborts the process ("terminate called without an active exception")
                self._thread = threading.Thread(target=self._run, name=BATCH_THREAD_NAME)
                self._thread.start()

    def cancel(self, request: Request) -> None:
        request.cancelled = True  # the row leaves the batch at the next step

    def pending_requests(self) -> list[Request]:
        with self._lock:
            return [row.request for row in (*self._waiting, *self._rows)]

    def close(self) -> None:
        self.stop_thread()
        self.model = None
        super().close()

    # --- the batch thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    self._waiting = [row for row in self._waiting if not row.request.cancelled]
                    free = self.max_batch_size - len(self._rows)
                    admitted, self._waiting = self._waiting[:free], self._waiting[free:]
                    if not admitted and not self._rows:
                        self._thread = None
                        return
                try:
                    if admitted:
                        self._prefill(admitted)
                    if self._rows:
                        self._decode_step()
                except Exception as error:  # every request in the batch gets it; waiting ones go on
                    log.exception("generation failed")
                    deliver([(row.request, error) for row in {*self._rows, *admitted}])
                    self._rows, self._cache, self._mask = [], None, None

    def _prefill(self, rows: list[_Row]) -> None:
        """Run the new prompts (left padded), append their cache to the batch's, sample their first token."""
        prompts = [row.request.prompt_ids for row in rows]
        width = max(map(len, prompts))
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
            input_ids[index, width - len(prompt) :] = torch.tensor(prompt)
            mask[index, width - len(prompt) :] = 1
            row.position = len(prompt)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        device = self._device
        output = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_argument: cache},
        )
        self._append_to_batch(rows, cache, mask.to(device))
        self._advance(rows, self._sample(output.logits[:, -1, :], rows))
        self._drop_finished()

    def _decode_step(self) -> None:
        rows = self._rows
        device = self._device
        assert self._mask is not None
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        output = self.model(
            input_ids=torch.tensor([[row.last_token] for row in rows], device=device),
            attention_mask=self._mask,
            position_ids=torch.tensor([[row.position] for row in rows], device=device),
            use_cache=True,
            **{self._cache_argument: self._cache},
        )
        for row in rows:
            row.position += 1
        self._advance(rows, self._sample(output.logits[:, -1, :], rows))
        self._drop_finished()

    @staticmethod
    def _sample(logits: torch.Tensor, rows: list[_Row]) -> list[int]:
        """Greedy, or temperature, then top-k, then top-p (transformers' order), with each row's generator."""
        chosen = logits.argmax(dim=-1).tolist()
        for index, row in enumerate(rows):
            settings = row.request.settings
            if not settings.do_sample:
                continue
            scores = logits[index].float() / settings.temperature
            if 0 < settings.top_k < scores.shape[-1]:
                scores, candidates = scores.topk(settings.top_k)
            else:
                scores, candidates = scores.sort(descending=True)
            probabilities = scores.softmax(dim=-1)
            if settings.top_p < 1.0:  # the smallest set of most likely tokens whose mass reaches top_p
                before = probabilities.cumsum(dim=-1) - probabilities
                probabilities = probabilities.masked_fill(before >= settings.top_p, 0.0)
            pick = torch.multinomial(probabilities, 1, generator=row.rng)
            chosen[index] = int(candidates[pick])
        return chosen

    def _advance(self, rows: list[_Row], tokens: list[int]) -> None:
        deliveries: list[tuple[Request, object]] = []
        for row, token in zip(rows, tokens, strict=True):
            if row.request.cancelled:
                continue
            row.generated += 1
            row.last_token = token
            self.generated_tokens += 1
            deliveries.append((row.request, [token]))
            if token in self.eos_ids or row.generated >= row.request.settings.max_new_tokens:
                row.finished = True
                deliveries.append((row.request, END))
        deliver(deliveries)

    def _append_to_batch(self, rows: list[_Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Both caches left padded to one length, then stacked: every row's padding stays on its left."""
        self.largest_batch = max(self.largest_batch, len(self._rows) + len(rows))
        if not self._rows:
            self._rows, self._cache, self._mask = list(rows), cache, mask
            return
        assert self._cache is not None and self._mask is not None
        length = max(self._mask.shape[1], mask.shape[1])

        def stacked(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return torch.cat([_pad_left(old, length), _pad_left(new, length)], dim=0)

        self._cache = DynamicCache(
            ddp_cache_data=[
                (stacked(old_keys, new_keys), stacked(old_values, new_values))
                for (old_keys, old_values, *_), (new_keys, new_values, *_) in zip(
                    self._cache, cache, strict=True
                )
            ]
        )
        self._mask = torch.cat([_pad_left(self._mask, length), _pad_left(mask, length)], dim=0)
        self._rows = [*self._rows, *rows]

    def _drop_finished(self) -> None:
        """Remove finished and cancelled rows, and the padding columns no remaining row needs."""
        keep = [index for index, row in enumerate(self._rows) if not row.gone]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        assert self._cache is not None and self._mask is not None
        rows = torch.tensor(keep, device=self._mask.device)
        mask = self._mask[rows]
        start = int((mask.sum(dim=0) > 0).nonzero()[0])
        self._cache = DynamicCache(
            ddp_cache_data=[
                (keys[rows, :, start:], values[rows, :, start:]) for keys, values, *_ in self._cache
            ]
        )
        self._mask = mask[:, start:]
        self._rows = [self._rows[index] for index in keep]


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros on the left of the sequence axis: dim 1 of a mask, dim 2 of a [batch, heads, seq, dim] KV."""
    missing = length - tensor.shape[1 if tensor.dim() == 2 else 2]
    if missing == 0:
        return tensor
    return F.pad(tensor, (missing, 0) if tensor.dim() == 2 else (0, 0, missing, 0))


def _check_cache_layout(model) -> None:
    """Rows join and leave the batch by stacking full-attention KV caches; sliding-window layers cannot."""
    cache = DynamicCache(config=model.config)
    if any(getattr(layer, "is_sliding", False) for layer in cache.layers):
        raise GenerationError(
            "This model has sliding-window attention layers, which the transformers engine cannot batch; "
            "use --backend vllm on a GPU."
        )
