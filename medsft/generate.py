"""Generation shared by `medsft infer`, `medsft demo`, `medsft eval` and the API server.

One interface, `Generator`: answer a batch of conversations (`generate`) or stream one answer (`stream`), both
split into reasoning and answer by medsft.chat_format. Two siblings implement it: `TransformersGenerator`
(any device, the tested reference) and `VLLMGenerator` (GPU, vLLM's engine). `load_generator` picks one.
"""

from __future__ import annotations

import gc
import importlib.util
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from medsft import paths
from medsft.chat_format import (
    PAD_TOKEN,
    THINK_OPEN,
    Conversation,
    contains_think_tag,
    prompt_token_ids,
    render_prompt,
    reply_end_ids,
    special_token_ids,
    split_reasoning,
)
from medsft.errors import MedsftError
from medsft.model import ModelSourceError, resolve_model_dir

STREAM_THREAD_NAME = "medsft-generate"
ENGINE_THREAD_NAME = "medsft-vllm-engine"
BACKENDS = ("hf", "vllm", "auto")
Backend = Literal["hf", "vllm", "auto"]


class GenerationError(MedsftError):
    """A generation setting or backend that cannot be used."""


@dataclass
class GenerationSettings:
    """Defaults are Qwen3's recommended thinking-mode sampling (temperature 0.6, top-p 0.95, top-k 20)."""

    max_new_tokens: int = 1024
    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    enable_thinking: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            problems.append(f"temperature must be above 0 for sampling (else greedy), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be 0 (off) or more, not {self.top_k}")
        if problems:
            raise GenerationError("; ".join(problems) + ".")

    @classmethod
    def greedy(cls, **overrides) -> GenerationSettings:
        """Deterministic decoding (evaluation, tests)."""
        return cls(**{"do_sample": False, **overrides})


@dataclass
class Generation:
    """One finished answer."""

    reasoning: str
    answer: str
    # one think block first, then a non-empty answer (no-think mode: a clean answer)
    well_formed: bool
    truncated: bool  # ended before the end-of-turn token: max_new_tokens reached, or stopped on request
    reasoning_tokens: int  # tokens up to and including the closing think tag
    answer_tokens: int  # tokens after it, end-of-turn token excluded
    text: str  # the whole decoded output, think tags kept
    prompt_tokens: int = 0


class StreamUpdate(NamedTuple):
    """The answer so far while streaming; the last update has done=True and the finished `generation`."""

    reasoning: str
    answer: str
    done: bool = False
    generation: Generation | None = None


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: torch.dtype | str | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise GenerationError(f"Unknown dtype {dtype!r}: use bfloat16, float16, float32 or auto.")
        return resolved
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if device.startswith("cuda") else torch.float32


def vllm_usable() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def resolve_backend(backend: str, device: str | None = None) -> Literal["hf", "vllm"]:
    """The backend that will run: "auto" is vLLM only when it is installed and the device is a GPU."""
    if backend not in BACKENDS:
        raise GenerationError(f"Unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    on_gpu = pick_device(device).startswith("cuda")
    if backend == "auto":
        return "vllm" if on_gpu and vllm_usable() else "hf"
    if backend == "vllm" and not on_gpu:
        raise GenerationError(f"vLLM needs a GPU, the device is {pick_device(device)!r}: use --backend hf.")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise GenerationError("vLLM is not installed: `make setup-vllm`, or use --backend hf.")
    return backend  # type: ignore[return-value]


class Generator(ABC):
    """A model that answers chats in Qwen3's format. Subclasses run the model; prompts and reading the output
    back (reasoning / answer split, token counts, truncation) are shared here."""

    backend: ClassVar[str]

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        device: str,
        model_dir: Path | None = None,
        configured_eos: int | list[int] | None = None,
    ):
        self.tokenizer = tokenizer
        self.device = device
        self.model_dir = model_dir
        self.think_close_id = special_token_ids(tokenizer)["think_close"]
        self.eos_ids = reply_end_ids(tokenizer, configured_eos)

    @property
    @abstractmethod
    def max_context(self) -> int:
        """Positions the model can attend to: prompt plus new tokens."""

    @abstractmethod
    def generate(
        self,
        conversations: list[Conversation],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Generation]:
        """One Generation per conversation, in input order."""

    @abstractmethod
    def stream(
        self,
        messages: Conversation,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
    ) -> Iterator[StreamUpdate]:
        """StreamUpdates as tokens arrive. Setting stop_event, or closing the iterator (a client went away),
        stops the model; the last update then has done=True and a truncated generation."""

    def close(self) -> None:
        """Free the model's memory; the generator cannot be used afterwards."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def build_prompt(self, messages: Conversation, enable_thinking: bool = True) -> str:
        return render_prompt(self.tokenizer, messages, enable_thinking)

    def prompt_ids(self, messages: Conversation, enable_thinking: bool = True) -> list[int]:
        return prompt_token_ids(self.tokenizer, messages, enable_thinking)

    def count_prompt_tokens(self, messages: Conversation, enable_thinking: bool = True) -> int:
        return len(self.prompt_ids(messages, enable_thinking))

    def read_output(self, new_ids: list[int], enable_thinking: bool, prompt_tokens: int = 0) -> Generation:
        """A Generation from the generated token ids (cut at the first end-of-turn token, if any)."""
        end = next((i for i, token in enumerate(new_ids) if token in self.eos_ids), None)
        content = new_ids if end is None else new_ids[:end]
        text = self.tokenizer.decode(content, skip_special_tokens=True)
        reasoning, answer, well_formed = split_reasoning(text)
        if not enable_thinking:
            well_formed = bool(answer) and not contains_think_tag(text)
        if self.think_close_id in content:
            reasoning_tokens = content.index(self.think_close_id) + 1
        else:
            reasoning_tokens = len(content) if text.lstrip().startswith(THINK_OPEN) else 0
        return Generation(
            reasoning=reasoning,
            answer=answer,
            well_formed=well_formed,
            truncated=end is None,
            reasoning_tokens=reasoning_tokens,
            answer_tokens=len(content) - reasoning_tokens,
            text=text,
            prompt_tokens=prompt_tokens,
        )


def _split_update(text: str) -> StreamUpdate:
    reasoning, answer, _ = split_reasoning(text)
    return StreamUpdate(reasoning, answer)


def _final_update(generation: Generation) -> StreamUpdate:
    return StreamUpdate(generation.reasoning, generation.answer, True, generation)


# --- transformers -------------------------------------------------------------------------------------------


class _StopOnEvents(StoppingCriteria):
    """Ends generation (all rows) as soon as one of the events is set: a stop button, a closed stream."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        stop = any(event.is_set() for event in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersGenerator(Generator):
    """A transformers causal LM with its tokenizer (left padding): batched `generate`, threaded streaming."""

    backend = "hf"

    def __init__(self, model, tokenizer: PreTrainedTokenizerBase, device: str, model_dir: Path | None = None):
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        super().__init__(tokenizer, device, model_dir, configured)
        self.model = model

    @property
    def max_context(self) -> int:
        config = getattr(self.model, "config", None)
        return int(getattr(config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    def close(self) -> None:
        self.model = None
        super().close()

    def _generate_kwargs(self, settings: GenerationSettings) -> dict:
        kwargs = {
            "max_new_tokens": settings.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if settings.do_sample:
            kwargs.update(
                do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k
            )
        else:  # neutralise sampling values a model's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    @torch.inference_mode()
    def generate(
        self,
        conversations: list[Conversation],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Generation]:
        """Batches group prompts of similar length (left padded) to waste little."""
        settings = settings or GenerationSettings()
        if not conversations:
            return []
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        prompts = [self.build_prompt(messages, settings.enable_thinking) for messages in conversations]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list[Generation | None] = [None] * len(prompts)
        with _progress_bar(len(prompts), progress) as bar:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = self.tokenizer(
                    [prompts[i] for i in indices], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.model.device)
                output = self.model.generate(**batch, **self._generate_kwargs(settings))
                new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
                for index, ids in zip(indices, new_tokens, strict=True):
                    results[index] = self.read_output(ids, settings.enable_thinking, lengths[index])
                bar.update(len(indices))
        return results  # type: ignore[return-value]

    def stream(
        self,
        messages: Conversation,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
    ) -> Iterator[StreamUpdate]:
        settings = settings or GenerationSettings()
        closed = threading.Event()  # set when this iterator ends, however it ends
        stopping = [closed, stop_event] if stop_event is not None else [closed]
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        prompt = self.build_prompt(messages, settings.enable_thinking)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {
            **inputs,
            **self._generate_kwargs(settings),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvents(*stopping)]),
        }
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    outcome["ids"] = self.model.generate(**kwargs)[0, prompt_length:].tolist()
            except BaseException as error:  # raised again in the consumer's thread below
                outcome["error"] = error
                streamer.end()

        thread = threading.Thread(target=run, name=STREAM_THREAD_NAME, daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                yield _split_update(text)
        finally:
            closed.set()  # normal end: no effect; early close: stops the model thread
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        yield _final_update(self.read_output(outcome["ids"], settings.enable_thinking, prompt_length))


def _progress_bar(total: int, shown: bool) -> tqdm:
    return tqdm(total=total, desc="generating", unit="q", disable=not shown)


# --- vLLM ---------------------------------------------------------------------------------------------------


class EngineLoop:
    """Drives a vLLM `LLMEngine` (add_request / step / abort_request / has_unfinished_requests) from one
    thread and hands each request's outputs to that request's own queue, so batch calls and any number of
    streams can share one engine. The thread runs while requests are unfinished."""

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue] = {}
        self._thread: threading.Thread | None = None

    def submit(self, prompt_ids: list[int], params) -> tuple[str, queue.Queue]:
        """Queue a request; its RequestOutputs (or an engine error) arrive on the returned queue."""
        request_id = uuid.uuid4().hex
        outputs: queue.Queue = queue.Queue()
        with self._lock:
            self.engine.add_request(request_id, {"prompt_token_ids": prompt_ids}, params)
            self._queues[request_id] = outputs
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=ENGINE_THREAD_NAME, daemon=True)
                self._thread.start()
        return request_id, outputs

    def abort(self, request_ids: Iterable[str]) -> None:
        with self._lock:
            live = [request_id for request_id in request_ids if self._queues.pop(request_id, None)]
            if live:
                self.engine.abort_request(live)

    def _run(self) -> None:
        while True:
            with self._lock:
                try:
                    if not self._queues:
                        self._thread = None
                        return
                    if not self.engine.has_unfinished_requests():
                        raise RuntimeError("the vLLM engine dropped requests without finishing them")
                    outputs = self.engine.step()
                except BaseException as error:  # every waiting caller gets it
                    for waiting in self._queues.values():
                        waiting.put(error)
                    self._queues.clear()
                    self._thread = None
                    return
                deliveries = []
                for output in outputs:
                    target = self._queues.get(output.request_id)
                    if target is not None:
                        deliveries.append((target, output))
                    if output.finished:
                        self._queues.pop(output.request_id, None)
            for target, output in deliveries:
                target.put(output)


def vllm_sampling_params(settings: GenerationSettings, stop_token_ids: list[int], final_only: bool):
    """vLLM SamplingParams equal to what TransformersGenerator asks transformers for."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    sampling = {"temperature": 0.0}
    if settings.do_sample:
        sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
    return SamplingParams(
        max_tokens=settings.max_new_tokens,
        seed=settings.seed,
        stop_token_ids=stop_token_ids,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.FINAL_ONLY if final_only else RequestOutputKind.CUMULATIVE,
        **sampling,
    )


class VLLMGenerator(Generator):
    """Generation with vLLM's engine (GPU only). Batches and streams go through one EngineLoop."""

    backend = "vllm"

    def __init__(
        self,
        engine,
        tokenizer: PreTrainedTokenizerBase,
        model_dir: Path | None = None,
        configured_eos: int | list[int] | None = None,
        sampling_params: Callable[[GenerationSettings, list[int], bool], Any] = vllm_sampling_params,
        owner: Any = None,
    ):
        super().__init__(tokenizer, "cuda", model_dir, configured_eos)
        self.loop = EngineLoop(engine)
        self._sampling_params = sampling_params
        self._owner = owner  # the vllm.LLM holding the engine: kept alive, freed by close()
        model_config = getattr(engine, "model_config", None)
        self._max_context = int(getattr(model_config, "max_model_len", None) or tokenizer.model_max_length)

    @classmethod
    def load(cls, model_dir: Path, dtype: torch.dtype, max_model_len: int | None = None) -> VLLMGenerator:
        from vllm import LLM

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        llm = LLM(model=str(model_dir), dtype=str(dtype).removeprefix("torch."), max_model_len=max_model_len)
        configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
        return cls(llm.llm_engine, tokenizer, model_dir, configured, owner=llm)

    @property
    def max_context(self) -> int:
        return self._max_context

    def close(self) -> None:
        self.loop = None  # type: ignore[assignment]
        self._owner = None
        super().close()

    def _completion_ids(self, completion) -> list[int]:
        ids = list(completion.token_ids)
        if completion.finish_reason == "stop" and (not ids or ids[-1] not in self.eos_ids):
            ids.append(min(self.eos_ids))  # the stop token is not in token_ids: mark the end of turn
        return ids

    @staticmethod
    def _next_output(outputs: queue.Queue, timeout: float | None = None):
        output = outputs.get(timeout=timeout)
        if isinstance(output, BaseException):
            raise output
        return output

    def generate(
        self,
        conversations: list[Conversation],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Generation]:
        """All prompts go to the engine at once: vLLM schedules its own batches (batch_size is not used)."""
        settings = settings or GenerationSettings()
        prompts = [self.prompt_ids(messages, settings.enable_thinking) for messages in conversations]
        params = self._sampling_params(settings, sorted(self.eos_ids), True)
        requests = [self.loop.submit(ids, params) for ids in prompts]
        results = []
        try:
            with _progress_bar(len(requests), progress) as bar:
                for ids, (_, outputs) in zip(prompts, requests, strict=True):
                    output = self._next_output(outputs)
                    while not output.finished:
                        output = self._next_output(outputs)
                    completion_ids = self._completion_ids(output.outputs[0])
                    results.append(self.read_output(completion_ids, settings.enable_thinking, len(ids)))
                    bar.update(1)
        finally:
            self.loop.abort(request_id for request_id, _ in requests[len(results) :])
        return results

    def stream(
        self,
        messages: Conversation,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
        poll_s: float = 0.05,
    ) -> Iterator[StreamUpdate]:
        settings = settings or GenerationSettings()
        prompt = self.prompt_ids(messages, settings.enable_thinking)
        params = self._sampling_params(settings, sorted(self.eos_ids), False)
        request_id, outputs = self.loop.submit(prompt, params)
        completion_ids: list[int] = []
        shown = ""
        try:
            while True:
                if stop_event is not None and stop_event.is_set():
                    break
                try:
                    output = self._next_output(outputs, timeout=poll_s)
                except queue.Empty:
                    continue
                completion = output.outputs[0]
                completion_ids = (
                    self._completion_ids(completion) if output.finished else list(completion.token_ids)
                )
                if completion.text != shown:
                    shown = completion.text
                    yield _split_update(shown)
                if output.finished:
                    break
        finally:
            self.loop.abort([request_id])  # no effect once finished; else frees the engine's slot
        yield _final_update(self.read_output(completion_ids, settings.enable_thinking, len(prompt)))


# --- loading ------------------------------------------------------------------------------------------------


def newest_final_model(output_dir: Path | None = None) -> Path:
    """The most recently written `output/*/final` (the default model of `medsft infer` and `medsft demo`)."""
    output_dir = Path(output_dir or paths.output_dir())
    candidates = [path for path in output_dir.glob("*/final") if (path / "config.json").is_file()]
    if not candidates:
        raise ModelSourceError(
            f"No trained model found in {output_dir}/*/final. Train one first (`make train RECIPE=smoke` "
            "takes a few minutes on CPU) or pass a model: MODEL=/path/to/folder, a ModelScope id such as "
            "Qwen/Qwen3-1.7B, or hf:<id>."
        )
    return max(candidates, key=lambda path: (path / "config.json").stat().st_mtime)


def load_generator(
    model: str | Path,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    backend: Backend = "hf",
) -> Generator:
    """Load a model folder, ModelScope id or `hf:` id. backend: "hf", "vllm" or "auto" (vLLM only when it is
    installed and the device is a GPU)."""
    chosen = resolve_backend(backend, device)
    model_dir = resolve_model_dir(model)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    if chosen == "vllm":
        return VLLMGenerator.load(model_dir, torch_dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        causal_lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
    except (OSError, ValueError) as error:  # no model files in the folder, or damaged ones
        reason = " ".join(str(error).split())[:300]
        raise ModelSourceError(
            f"{model_dir} is not a loadable model folder ({type(error).__name__}: {reason}). Pass a folder "
            "with config.json, the weights and the tokenizer files, such as output/<recipe>/final."
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD_TOKEN
    causal_lm = causal_lm.to(device)
    causal_lm.eval()
    return TransformersGenerator(causal_lm, tokenizer, device, model_dir)
