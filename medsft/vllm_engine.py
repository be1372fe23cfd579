"""The vLLM backend of medsft.engine (GPU): vLLM's own continuous batching and paged KV cache.

The only module that imports vLLM. One thread drives vLLM's `LLMEngine` (add_request / step / abort_request /
has_unfinished_requests) while requests are unfinished and hands each request's new token ids to its
consumer, so batches, terminal streams and API requests share one engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, GenerationConfig

from medsft.engine import DEFAULT_MAX_BATCH_SIZE, END, Engine, GenerationSettings, Request, deliver

ENGINE_THREAD_NAME = "medsft-vllm-engine"


def sampling_params(settings: GenerationSettings, stop_token_ids: list[int]):
    """vLLM SamplingParams equal to what TransformersEngine samples with: greedy, or temperature, top-k
    (0: off) and top-p; the request's own seed. Token ids only: medsft decodes them itself."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    sampling: dict[str, Any] = {"temperature": 0.0}
    if settings.do_sample:
        sampling = {"temperature": settings.temperature, "top_p": settings.top_p}
        if settings.top_k > 0:
            sampling["top_k"] = settings.top_k
    return SamplingParams(
        max_tokens=settings.max_new_tokens,
        seed=settings.seed,
        stop_token_ids=stop_token_ids,
        detokenize=False,
        output_kind=RequestOutputKind.CUMULATIVE,
        **sampling,
    )


class VLLMEngine(Engine):
    """Generation with vLLM's engine (GPU only); `generate` hands it every prompt at once."""

    backend = "vllm"
    schedules_own_batches = True

    def __init__(
        self,
        engine,
        tokenizer,
        model_dir: Path | None = None,
        configured_eos: int | list[int] | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        params: Callable[[GenerationSettings, list[int]], Any] = sampling_params,
        owner: Any = None,
    ):
        model_config = getattr(engine, "model_config", None)
        context = int(getattr(model_config, "max_model_len", None) or tokenizer.model_max_length)
        super().__init__(tokenizer, "cuda", context, max_batch_size, model_dir, configured_eos)
        self.engine = engine
        self._params = params
        self._owner = owner  # the vllm.LLM holding the engine: kept alive, freed by close()
        self._lock = threading.Lock()
        self._live: dict[str, tuple[Request, list[int]]] = {}  # request id -> (request, ids handed over)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        device: str,
        dtype: torch.dtype,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_model_len: int | None = None,
    ) -> VLLMEngine:
        from vllm import LLM

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        llm = LLM(
            model=str(model_dir),
            dtype=str(dtype).removeprefix("torch."),
            max_model_len=max_model_len,
            max_num_seqs=max_batch_size,
        )
        try:
            configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
        except OSError:  # no generation_config.json
            configured = None
        return cls(llm.llm_engine, tokenizer, model_dir, configured, max_batch_size, owner=llm)

    @property
    def running(self) -> int:
        return len(self._live)

    def submit(self, request: Request) -> None:
        params = self._params(request.settings, sorted(self.eos_ids))
        with self._lock:
            self.engine.add_request(request.id, {"prompt_token_ids": request.prompt_ids}, params)
            self._live[request.id] = (request, [])
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=ENGINE_THREAD_NAME, daemon=True)
                self._thread.start()

    def cancel(self, request: Request) -> None:
        request.cancelled = True
        with self._lock:
            if self._live.pop(request.id, None) is not None:
                self.engine.abort_request([request.id])

    def pending_requests(self) -> list[Request]:
        with self._lock:
            return [request for request, _ in self._live.values()]

    def close(self) -> None:
        self.stop_thread()
        self.engine = None
        self._owner = None
        super().close()

    def _run(self) -> None:
        while True:
            with self._lock:
                try:
                    if not self._live:
                        self._thread = None
                        return
                    if not self.engine.has_unfinished_requests():
                        raise RuntimeError("the vLLM engine dropped requests without finishing them")
                    outputs = self.engine.step()
                except BaseException as error:  # every waiting caller gets it
                    deliver([(request, error) for request, _ in self._live.values()])
                    self._live.clear()
                    self._thread = None
                    return
                deliveries = []
                for output in outputs:
                    live = self._live.get(output.request_id)
                    if live is None:
                        continue
                    request, handed = live
                    new = self._new_tokens(output, handed)
                    if new:
                        handed.extend(new)
                        self.generated_tokens += len(new)
                        deliveries.append((request, new))
                    if output.finished:
                        deliveries.append((request, END))
                        del self._live[output.request_id]
                self.largest_batch = max(self.largest_batch, len(outputs))
            deliver(deliveries)

    def _new_tokens(self, output, handed: list[int]) -> list[int]:
        """Token ids not handed over yet; a stop on an end-of-turn token that vLLM leaves out of token_ids
        gets it back, so every backend ends a finished turn the same way."""
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        stopped = output.finished and completion.finish_reason == "stop"
        if stopped and (not ids or ids[-1] not in self.eos_ids):
            stop = getattr(completion, "stop_reason", None)
            ids.append(stop if isinstance(stop, int) else min(self.eos_ids))
        return ids[len(handed) :]
