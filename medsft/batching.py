"""Token engines for the API server: many requests decoded together, each streamed to its own consumer.

`ContinuousBatcher` runs a transformers causal LM one token step at a time over every active request. A
request that arrives while others are decoding joins the batch at the next step (its prompt is prefilled and
its KV cache appended to the batch's), a finished or cancelled request leaves it at once, and each request
gets its own sampling settings and seed. `VLLMEngine` puts vLLM's async engine behind the same interface
on a GPU.

Both hand out `stream(prompt_ids, settings)` (settings: a GenerationSettings, its enable_thinking already in
the prompt): an async iterator of new token ids. The end-of-turn token, when
the model produces it, is the last id yielded. Closing the iterator early (a client went away) ends that
request's generation and nobody else's. A consumer that reads slowly only lets its own tokens pile up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from medsft.generate import GenerationSettings

log = logging.getLogger(__name__)

BATCH_THREAD_NAME = "medsft-serve-batch"
_END = object()  # delivered after a request's last token


@dataclass(eq=False)
class _Row:
    prompt_ids: list[int]
    sampling: GenerationSettings
    outputs: asyncio.Queue  # new token lists, then _END (or an exception); read on `loop`
    loop: asyncio.AbstractEventLoop
    rng: torch.Generator | None = None
    generated: int = 0
    position: int = 0  # position id of the next token fed to the model
    last_token: int = -1  # sampled, not yet fed
    finished: bool = False
    cancelled: bool = False  # set from the event loop's thread; read by the batch thread
    tokens: list[int] = field(default_factory=list)


class ContinuousBatcher:
    """Decodes every active request together, one token per step, in a thread that runs while there is work.

    The thread starts with the first request and ends as soon as no request is waiting or decoding, so an
    idle server holds no model thread. Requests beyond `max_batch_size` wait for a free row.
    """

    def __init__(self, model, eos_ids: set[int], pad_token_id: int, max_batch_size: int = 16):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        self.model = model
        self.eos_ids = frozenset(eos_ids)
        self.pad_token_id = pad_token_id
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        # over the server's life, for health checks: tokens generated, most requests decoded in one step
        self.generated_tokens = 0
        self.largest_batch = 0
        self._lock = threading.Lock()
        self._waiting: list[_Row] = []
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache length]: 0 for left padding
        self._thread: threading.Thread | None = None
        _check_cache_layout(model)
        # transformers 5 renamed the forward's `past_key_values` to `cache`; the cache is updated in place
        self._cache_argument = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    async def stream(self, prompt_ids: list[int], sampling: GenerationSettings) -> AsyncIterator[list[int]]:
        row = self._submit(prompt_ids, sampling, asyncio.get_running_loop())
        outputs = row.outputs
        try:
            while True:
                tokens: list[int] = []
                item = await outputs.get()
                while True:  # everything already delivered goes out as one chunk
                    if item is _END:
                        if tokens:
                            yield tokens
                        return
                    if isinstance(item, BaseException):
                        raise item
                    tokens.extend(item)  # type: ignore[arg-type]
                    if outputs.empty():
                        break
                    item = outputs.get_nowait()
                yield tokens
        finally:
            row.cancelled = True  # no effect once finished; else the row leaves the batch at the next step

    def _submit(
        self, prompt_ids: list[int], sampling: GenerationSettings, loop: asyncio.AbstractEventLoop
    ) -> _Row:
        if not prompt_ids:
            raise ValueError("empty prompt")
        rng = None
        if sampling.do_sample and sampling.seed is not None:
            rng = torch.Generator(device=self.device)
            rng.manual_seed(sampling.seed)
        row = _Row(list(prompt_ids), sampling, asyncio.Queue(), loop, rng=rng)
        with self._lock:
            self._waiting.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=BATCH_THREAD_NAME, daemon=True)
                self._thread.start()
        return row

    # --- the batch thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    self._waiting = [row for row in self._waiting if not row.cancelled]
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
                    _deliver([(row, error) for row in {*self._rows, *admitted}])
                    self._rows, self._cache, self._mask = [], None, None

    def _prefill(self, rows: list[_Row]) -> None:
        """Run the new prompts (left padded), append their cache to the batch's, sample their first token."""
        width = max(len(row.prompt_ids) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            mask[index, width - len(row.prompt_ids) :] = 1
            row.position = len(row.prompt_ids)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_argument: cache},
        )
        self._append_to_batch(rows, cache, mask.to(self.device))
        self._advance(rows, self._sample(output.logits[:, -1, :], rows))
        self._drop_finished()

    def _decode_step(self) -> None:
        rows = self._rows
        assert self._mask is not None
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        output = self.model(
            input_ids=torch.tensor([[row.last_token] for row in rows], device=self.device),
            attention_mask=self._mask,
            position_ids=torch.tensor([[row.position] for row in rows], device=self.device),
            use_cache=True,
            **{self._cache_argument: self._cache},
        )
        for row in rows:
            row.position += 1
        self._advance(rows, self._sample(output.logits[:, -1, :], rows))
        self._drop_finished()

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> list[int]:
        chosen = logits.argmax(dim=-1).tolist()
        for index, row in enumerate(rows):
            settings = row.sampling
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
        deliveries: list[tuple[_Row, object]] = []
        for row, token in zip(rows, tokens, strict=True):
            if row.cancelled:
                continue
            row.generated += 1
            row.last_token = token
            self.generated_tokens += 1
            deliveries.append((row, [token]))
            if token in self.eos_ids or row.generated >= row.sampling.max_new_tokens:
                row.finished = True
                deliveries.append((row, _END))
        _deliver(deliveries)

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
        keep = [index for index, row in enumerate(self._rows) if not (row.finished or row.cancelled)]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        assert self._cache is not None and self._mask is not None
        rows = torch.tensor(keep, device=self.device)
        mask = self._mask[rows]
        start = int((mask.sum(dim=0) > 0).nonzero()[0])
        self._cache = DynamicCache(
            ddp_cache_data=[
                (keys[rows, :, start:], values[rows, :, start:]) for keys, values, *_ in self._cache
            ]
        )
        self._mask = mask[:, start:]
        self._rows = [self._rows[index] for index in keep]


def _deliver(deliveries: list[tuple[_Row, object]]) -> None:
    """Hand items to their rows' queues: one wake-up of each event loop per step, not one per row."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Row, object]]] = {}
    for row, item in deliveries:
        by_loop.setdefault(row.loop, []).append((row, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody to deliver to
            for row, _ in items:
                row.cancelled = True


def _put_all(items: list[tuple[_Row, object]]) -> None:
    for row, item in items:
        row.outputs.put_nowait(item)


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
        raise ValueError(
            "This model has sliding-window attention layers, which the request batcher cannot merge; "
            "serve it with --backend vllm on a GPU."
        )


class VLLMEngine:
    """vLLM's AsyncLLM (its own continuous batching and paged KV cache) behind the batcher's interface.

    Written against vLLM's documented AsyncLLM API (`from_engine_args`, `generate`, `abort`); it needs a GPU.
    """

    def __init__(
        self,
        model_dir: Path,
        dtype: str,
        eos_ids: set[int],
        max_batch_size: int,
        max_model_len: int | None = None,
    ):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(model_dir), dtype=dtype, max_model_len=max_model_len, max_num_seqs=max_batch_size
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.eos_ids = frozenset(eos_ids)
        self.max_batch_size = max_batch_size
        self.max_context = int(self.engine.model_config.max_model_len)
        self.generated_tokens = 0
        self.largest_batch = 0  # vLLM's scheduler does not report it here
        self.running = 0

    waiting = 0  # vLLM queues inside its own scheduler
    thread_alive = False

    async def stream(self, prompt_ids: list[int], sampling: GenerationSettings) -> AsyncIterator[list[int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        options: dict = {"temperature": 0.0}
        if sampling.do_sample:
            options = {"temperature": sampling.temperature, "top_p": sampling.top_p}
            if sampling.top_k > 0:
                options["top_k"] = sampling.top_k
        params = SamplingParams(
            n=1,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            stop_token_ids=sorted(self.eos_ids),
            output_kind=RequestOutputKind.DELTA,
            **options,
        )
        request_id = uuid.uuid4().hex
        last: int | None = None
        self.running += 1
        outputs = self.engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id)
        try:
            async for output in outputs:
                completion = output.outputs[0]
                tokens = list(completion.token_ids)
                if tokens:
                    last = tokens[-1]
                if output.finished and completion.finish_reason == "stop" and last not in self.eos_ids:
                    # the end-of-turn token is not always listed in token_ids: yield it like the batcher does
                    stop = completion.stop_reason
                    tokens.append(stop if isinstance(stop, int) else min(self.eos_ids))
                self.generated_tokens += len(tokens)
                if tokens:
                    yield tokens
        finally:
            self.running -= 1
            await outputs.aclose()  # vLLM aborts a request whose output stream is closed early
            await self.engine.abort(request_id)  # frees its slot in any case; no effect once finished

    def shutdown(self) -> None:
        self.engine.shutdown()
