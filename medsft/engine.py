"""The generation engine behind `medsft infer`, `medsft demo`, `medsft eval` and `medsft serve`.

`Engine` is the one interface. A backend implements four things: `load` a model, `submit` a `Request` (a
prompt's token ids and its GenerationSettings; the engine hands the new token ids over as they come), `cancel`
one, and `close`. Built on those and shared by every backend: `generate` (a batch of conversations, each a
finished `Generation`), `stream` (one conversation as StreamUpdates, read by a thread; a stop event or closing
the iterator cancels it) and `stream_tokens` (one prompt's new token ids, read on an event loop: the API).
Prompts come from the tokenizer's chat template, output is read back by medsft.chat_format.

Backends, one class each in its own module: "hf" `TransformersEngine` (medsft.transformers_engine: continuous
batching over a transformers model, any device) and "vllm" `VLLMEngine` (medsft.vllm_engine: vLLM, GPU).
`load_engine` picks and loads one; a new backend is a class in a new module and its line in ENGINES.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from medsft import paths
from medsft.chat_format import (
    Conversation,
    contains_think_tag,
    prompt_token_ids,
    reasoning_token_count,
    render_prompt,
    reply_end_ids,
    special_token_ids,
    split_reasoning,
)
from medsft.checkpoint import model_folder_damage
from medsft.errors import MedsftError
from medsft.model import ModelSourceError, resolve_model_dir
from medsft.reply import Reply

# backend name -> (module, class); "auto" picks vLLM on a GPU where it is installed, else transformers
ENGINES = {
    "hf": ("medsft.transformers_engine", "TransformersEngine"),
    "vllm": ("medsft.vllm_engine", "VLLMEngine"),
}
BACKENDS = (*ENGINES, "auto")
Backend = Literal["hf", "vllm", "auto"]
DEFAULT_MAX_BATCH_SIZE = 16
END = object()  # a request's last item: nothing more will come


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

    @classmethod
    def non_thinking(cls, **overrides) -> GenerationSettings:
        """Qwen3's recommended non-thinking-mode sampling (temperature 0.7, top-p 0.8, top-k 20), with
        enable_thinking=False."""
        return cls(**{"temperature": 0.7, "top_p": 0.8, "top_k": 20, "enable_thinking": False, **overrides})


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


class Request:
    """One prompt given to an engine. The engine puts (request, item) pairs into `outputs`, each item a list
    of new token ids, then END, or the exception that ended the request: a queue.Queue read by a thread
    (several requests may share one), or an asyncio.Queue read on `loop`. The end-of-turn token, when the
    model produces it, is the last id handed over."""

    def __init__(
        self,
        prompt_ids: list[int],
        settings: GenerationSettings,
        outputs: queue.Queue | asyncio.Queue | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        if not prompt_ids:
            raise GenerationError("The prompt is empty.")
        self.id = uuid.uuid4().hex
        self.prompt_ids = list(prompt_ids)
        self.settings = settings
        self.loop = loop
        self.outputs = outputs if outputs is not None else asyncio.Queue() if loop else queue.Queue()
        self.cancelled = False  # set by the consumer; the engine drops the request at its next step


def deliver(deliveries: list[tuple[Request, object]]) -> None:
    """Hand items to their requests' consumers from an engine's thread: one wake-up of each event loop per
    call, not one per request. A request whose event loop is gone (a server shutting down) is cancelled."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Request, object]]] = {}
    for request, item in deliveries:
        if request.loop is None:
            request.outputs.put((request, item))
        else:
            by_loop.setdefault(request.loop, []).append((request, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:
            for request, _ in items:
                request.cancelled = True


def _put_all(items: list[tuple[Request, object]]) -> None:
    for request, item in items:
        request.outputs.put_nowait((request, item))


def _raise_if_error(item: object) -> None:
    if isinstance(item, BaseException):
        raise item


class Engine(ABC):
    """A model that answers chats in Qwen3's format: a backend decodes submitted requests; prompts, reading
    output back (reasoning / answer split, token counts, truncation), batches and streams are shared here."""

    backend: ClassVar[str]
    schedules_own_batches: ClassVar[bool] = False  # True: `generate` submits every prompt at once

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        device: str,
        max_context: int,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        model_dir: Path | None = None,
        configured_eos: int | list[int] | None = None,
    ):
        if max_batch_size < 1:
            raise GenerationError(f"max_batch_size must be at least 1, not {max_batch_size}")
        self.tokenizer = tokenizer
        self.device = device
        self.max_context = max_context  # positions the model attends to: prompt plus new tokens
        self.max_batch_size = max_batch_size  # requests decoded together
        self.model_dir = model_dir
        self.think_close_id = special_token_ids(tokenizer)["think_close"]
        self.eos_ids = reply_end_ids(tokenizer, configured_eos)
        # over the engine's life, for health checks: tokens generated, most requests decoded in one step
        self.generated_tokens = 0
        self.largest_batch = 0

    # --- what a backend implements ------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def load(
        cls,
        model_dir: Path,
        device: str,
        dtype: torch.dtype,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_model_len: int | None = None,
    ) -> Engine:
        """The engine for a model folder."""

    @abstractmethod
    def submit(self, request: Request) -> None:
        """Start decoding the request; its tokens go to request.outputs (see Request)."""

    @abstractmethod
    def cancel(self, request: Request) -> None:
        """Stop decoding the request (no effect once it finished): others in its batch go on."""

    def close(self) -> None:
        """Free the model's memory; the engine cannot be used afterwards."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def running(self) -> int:
        """Requests decoding now."""
        return 0

    @property
    def waiting(self) -> int:
        """Requests waiting for a place in the batch."""
        return 0

    _thread: threading.Thread | None = None  # a backend's decoding thread, started when work arrives

    def stop_thread(self, timeout_s: float = 60.0) -> None:
        """Cancel what is queued or decoding and wait for the decoding thread to end: a thread still inside a
        model call when the interpreter exits aborts the process ("terminate called without an active
        exception", exit 134)."""
        thread = self._thread
        for request in self.pending_requests():
            self.cancel(request)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def pending_requests(self) -> list[Request]:
        """The requests a backend holds (waiting or decoding)."""
        return []

    @property
    def thread_alive(self) -> bool:
        """Whether the engine's decoding thread runs (it runs only while there is work)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- prompts and output -------------------------------------------------------------------------------

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
        reasoning_tokens = reasoning_token_count(content, self.think_close_id, text)
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

    def length_problem(self, prompt_tokens: int, max_new_tokens: int) -> str | None:
        """The one generation-length rule of every command: the prompt and the new tokens fit the model's
        context. Why not, with what fits, or None."""
        if prompt_tokens + max_new_tokens <= self.max_context:
            return None
        room = self.max_context - prompt_tokens
        return (
            f"{prompt_tokens} prompt + {max_new_tokens} new tokens (--max-new-tokens) > model context "
            f"{self.max_context}: "
            + (f"ask for at most {room} new tokens" if room > 0 else "shorten the prompt")
        )

    def check_length(self, prompts: list[list[int]], settings: GenerationSettings) -> None:
        longest = max(map(len, prompts), default=0)
        if problem := self.length_problem(longest, settings.max_new_tokens):
            raise GenerationError(f"--max-new-tokens {settings.max_new_tokens} does not fit: {problem}.")

    # --- batches and streams ------------------------------------------------------------------------------

    def generate(
        self,
        conversations: list[Conversation],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Generation]:
        """One Generation per conversation, in input order. Up to `batch_size` requests decode together
        (longest prompts first; each finished one makes room for the next), or all of them, in input order,
        where the engine schedules its own batches (vLLM)."""
        settings = settings or GenerationSettings()
        prompts = [self.prompt_ids(messages, settings.enable_thinking) for messages in conversations]
        self.check_length(prompts, settings)
        if self.schedules_own_batches:
            order, window = list(range(len(prompts))), len(prompts)
        else:
            order, window = sorted(range(len(prompts)), key=lambda i: -len(prompts[i])), batch_size
        pending = iter(order)
        outputs: queue.Queue = queue.Queue()
        live: dict[Request, tuple[int, list[int]]] = {}
        results: list[Generation | None] = [None] * len(prompts)

        def submit_next() -> None:
            index = next(pending, None)
            if index is not None:
                request = Request(prompts[index], settings, outputs)
                live[request] = (index, [])
                self.submit(request)

        try:
            with tqdm(total=len(prompts), desc="generating", unit="q", disable=not progress) as bar:
                for _ in range(min(window, len(prompts))):
                    submit_next()
                while live:
                    request, item = outputs.get()
                    _raise_if_error(item)
                    index, ids = live[request]
                    if item is not END:
                        ids.extend(item)  # type: ignore[arg-type]
                        continue
                    del live[request]
                    results[index] = self.read_output(ids, settings.enable_thinking, len(prompts[index]))
                    bar.update(1)
                    submit_next()
        finally:
            for request in live:
                self.cancel(request)
        return results  # type: ignore[return-value]

    def stream(
        self,
        messages: Conversation,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
        poll_s: float = 0.05,
    ) -> Iterator[StreamUpdate]:
        """StreamUpdates as tokens arrive. Setting stop_event, or closing the iterator (a client went away),
        cancels the request; the last update then has done=True and a truncated generation."""
        settings = settings or GenerationSettings()
        prompt = self.prompt_ids(messages, settings.enable_thinking)
        self.check_length([prompt], settings)
        request = Request(prompt, settings)
        reply = Reply(self.tokenizer, self.eos_ids, [], settings.max_new_tokens)
        self.submit(request)
        shown = ""
        try:
            while not (stop_event is not None and stop_event.is_set()):
                try:
                    _, item = request.outputs.get(timeout=poll_s)
                except queue.Empty:
                    continue
                _raise_if_error(item)
                if item is END:
                    break
                reply.feed(item)  # type: ignore[arg-type]
                if reply.text != shown:
                    shown = reply.text
                    yield StreamUpdate(*split_reasoning(shown)[:2])
        finally:
            self.cancel(request)  # no effect once finished; else the engine stops working on it
        generation = self.read_output(reply.ids, settings.enable_thinking, len(prompt))
        yield StreamUpdate(generation.reasoning, generation.answer, True, generation)

    async def stream_tokens(
        self, prompt_ids: list[int], settings: GenerationSettings
    ) -> AsyncIterator[list[int]]:
        """New token ids of one prompt (its enable_thinking already in it), read on the running event loop;
        what arrived together comes as one list. Closing the iterator early cancels the request, and a
        consumer that reads slowly only lets its own tokens pile up."""
        request = Request(prompt_ids, settings, loop=asyncio.get_running_loop())
        self.submit(request)
        outputs: asyncio.Queue = request.outputs  # type: ignore[assignment]
        try:
            while True:
                tokens: list[int] = []
                _, item = await outputs.get()
                while True:  # everything already delivered goes out as one chunk
                    _raise_if_error(item)
                    if item is END:
                        if tokens:
                            yield tokens
                        return
                    tokens.extend(item)  # type: ignore[arg-type]
                    if outputs.empty():
                        break
                    _, item = outputs.get_nowait()
                yield tokens
        finally:
            self.cancel(request)


# --- choosing and loading -----------------------------------------------------------------------------------


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


def newest_final_model(output_dir: Path | None = None) -> Path:
    """The most recently written `output/*/final` (the default model of the commands that answer)."""
    output_dir = Path(output_dir or paths.output_dir())
    candidates = [path for path in output_dir.glob("*/final") if (path / "config.json").is_file()]
    if not candidates:
        raise ModelSourceError(
            f"No trained model found in {output_dir}/*/final. Train one first (`make train RECIPE=smoke` "
            "takes a few minutes on CPU) or pass a model: MODEL=/path/to/folder, a ModelScope id such as "
            "Qwen/Qwen3-1.7B, or hf:<id>."
        )
    return max(candidates, key=lambda path: (path / "config.json").stat().st_mtime)


def load_engine(
    model: str | Path,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    backend: Backend = "hf",
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_model_len: int | None = None,
) -> Engine:
    """Load a model folder, ModelScope id or `hf:` id into the engine of `backend`: "hf", "vllm" or "auto"
    (vLLM only when it is installed and the device is a GPU). max_model_len caps the context."""
    chosen = resolve_backend(backend, device)
    model_dir = resolve_model_dir(model)
    if (model_dir / "config.json").is_file() and (damage := model_folder_damage(model_dir)):
        raise ModelSourceError(
            f"{model_dir} cannot be loaded: {damage}. A save cut short leaves this: `medsft train --resume` "
            "writes final/ again from the last checkpoint; or pass another model folder."
        )
    device = pick_device(device)
    module, name = ENGINES[chosen]
    engine_class: type[Engine] = getattr(importlib.import_module(module), name)
    return engine_class.load(model_dir, device, pick_dtype(device, dtype), max_batch_size, max_model_len)
