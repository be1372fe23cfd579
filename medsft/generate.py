"""Generation shared by CLI, demo and evaluation: chat template, batching, streaming, reasoning split."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from medsft.model import ModelSourceError, resolve_model_dir
from medsft.paths import OUTPUT_DIR

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
STREAM_THREAD_NAME = "medsft-generate"

Message = dict[str, str]
Conversation = list[Message]


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

    @classmethod
    def greedy(cls, **overrides) -> GenerationSettings:
        """Deterministic decoding (evaluation, tests)."""
        return cls(**{"do_sample": False, **overrides})


@dataclass
class Generation:
    reasoning: str
    answer: str
    # one <think>…</think> block first, then a non-empty answer (no-think mode: a clean answer)
    well_formed: bool
    truncated: bool  # stopped at max_new_tokens (or by a stop request) before the end-of-turn token
    reasoning_tokens: int  # tokens up to and including </think>
    answer_tokens: int  # tokens after </think>, end-of-turn token excluded
    text: str  # the whole decoded output, <think> tags kept


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, well_formed) of a model output; also works on partial (streaming) output.

    While the think block is still open everything is reasoning and the answer is empty. Without any think
    tags (thinking disabled) the whole text is the answer and `well_formed` is False by this definition.
    """
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        body = stripped[len(THINK_OPEN) :]
        if THINK_CLOSE not in body:
            return body.strip(), "", False
        reasoning, answer = body.split(THINK_CLOSE, 1)
        reasoning, answer = reasoning.strip(), answer.strip()
        extra_tags = any(tag in part for tag in (THINK_OPEN, THINK_CLOSE) for part in (reasoning, answer))
        return reasoning, answer, bool(answer) and not extra_tags
    if THINK_CLOSE in stripped:  # opening tag missing (e.g. put in the prompt by some templates)
        reasoning, answer = stripped.split(THINK_CLOSE, 1)
        return reasoning.strip(), answer.strip(), False
    return "", stripped.strip(), False


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def pick_dtype(device: str, dtype: torch.dtype | str | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if device.startswith("cuda") else torch.float32


class _StopOnEvent(StoppingCriteria):
    """Ends generation (all rows) as soon as the event is set: a stop button, a disconnected client."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class Generator:
    """A causal LM with its tokenizer (left padding), ready to answer chats with Qwen3's template."""

    backend = "hf"

    def __init__(self, model, tokenizer: PreTrainedTokenizerBase, device: str, model_dir: Path | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.model_dir = model_dir
        self.think_close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if configured is not None:
            ids.update(configured if isinstance(configured, list) else [configured])
        for token in ("<|im_end|>", self.tokenizer.eos_token):
            token_id = self.tokenizer.convert_tokens_to_ids(token) if token else None
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        return ids

    @property
    def max_context(self) -> int:
        """Positions the model was built for (prompt + new tokens)."""
        config = getattr(self.model, "config", None)
        return int(getattr(config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    def build_prompt(self, messages: Conversation, enable_thinking: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
        )

    def count_prompt_tokens(self, messages: Conversation, enable_thinking: bool = True) -> int:
        prompt = self.build_prompt(messages, enable_thinking)
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _generate_kwargs(self, settings: GenerationSettings) -> dict:
        kwargs = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        kwargs["eos_token_id"] = sorted(self.eos_ids)
        if settings.do_sample:
            kwargs.update(
                do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k
            )
        else:  # neutralise sampling values a model's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _result(self, new_ids: list[int], enable_thinking: bool, stopped_early: bool = False) -> Generation:
        end = next((i for i, token in enumerate(new_ids) if token in self.eos_ids), None)
        truncated = end is None
        content = new_ids if end is None else new_ids[:end]
        text = self.tokenizer.decode(content, skip_special_tokens=True)
        reasoning, answer, well_formed = split_reasoning(text)
        if not enable_thinking:
            well_formed = bool(answer) and THINK_OPEN not in text and THINK_CLOSE not in text
        if self.think_close_id in content:
            reasoning_tokens = content.index(self.think_close_id) + 1
        else:
            reasoning_tokens = len(content) if text.lstrip().startswith(THINK_OPEN) else 0
        return Generation(
            reasoning=reasoning,
            answer=answer,
            well_formed=well_formed,
            truncated=truncated or stopped_early,
            reasoning_tokens=reasoning_tokens,
            answer_tokens=len(content) - reasoning_tokens,
            text=text,
        )

    @torch.inference_mode()
    def generate(
        self,
        conversations: list[Conversation],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Generation]:
        """Answers in input order; batches group prompts of similar length (left padded) to waste little."""
        settings = settings or GenerationSettings()
        if not conversations:
            return []
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        prompts = [self.build_prompt(messages, settings.enable_thinking) for messages in conversations]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list[Generation | None] = [None] * len(prompts)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc="generating", unit="q")
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = self.tokenizer(
                [prompts[i] for i in indices], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            output = self.model.generate(**batch, **self._generate_kwargs(settings))
            new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
            for index, ids in zip(indices, new_tokens, strict=True):
                results[index] = self._result(ids, settings.enable_thinking)
            if bar is not None:
                bar.update(len(indices))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def stream(
        self,
        messages: Conversation,
        settings: GenerationSettings | None = None,
        stop_event: threading.Event | None = None,
    ) -> Iterator[tuple[str, str, bool]]:
        """Yields (reasoning_so_far, answer_so_far, done) as tokens arrive; setting stop_event ends it.

        The last item has done=True. Closing the iterator early (a client went away) also stops the model.
        """
        settings = settings or GenerationSettings()
        stop_event = stop_event or threading.Event()
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        prompt = self.build_prompt(messages, settings.enable_thinking)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {
            **inputs,
            **self._generate_kwargs(settings),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvent(stop_event)]),
        }
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as error:  # surfaced in the consumer's thread below
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, name=STREAM_THREAD_NAME, daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                reasoning, answer, _ = split_reasoning(text)
                yield reasoning, answer, False
        finally:
            stop_event.set()  # normal end: no effect; early close: stops the model thread
            thread.join()
        if errors:
            raise errors[0]
        reasoning, answer, _ = split_reasoning(text)
        yield reasoning, answer, True


class VLLMGenerator(Generator):
    """Batch generation with vLLM (GPU only). Streaming yields the finished answer at once.

    Not exercised by the test suite (no GPU there); the HF path is the reference.
    """

    backend = "vllm"

    def __init__(self, model_dir: Path, dtype: torch.dtype, max_model_len: int | None = None):
        from vllm import LLM

        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        dtype_name = str(dtype).removeprefix("torch.")
        self.llm = LLM(model=str(model_dir), dtype=dtype_name, max_model_len=max_model_len)
        self.model = None
        engine_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self._max_context = getattr(engine_config, "max_model_len", None) or tokenizer.model_max_length
        super().__init__(None, tokenizer, "cuda", model_dir)

    @property
    def max_context(self) -> int:
        return int(self._max_context)

    def generate(self, conversations, settings=None, batch_size=8, progress=False) -> list[Generation]:
        from vllm import SamplingParams

        settings = settings or GenerationSettings()
        if not conversations:
            return []
        sampling = {"temperature": 0.0}
        if settings.do_sample:
            sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
        params = SamplingParams(
            max_tokens=settings.max_new_tokens,
            seed=settings.seed,
            stop_token_ids=sorted(self.eos_ids),
            skip_special_tokens=True,
            **sampling,
        )
        prompts = [self.build_prompt(messages, settings.enable_thinking) for messages in conversations]
        outputs = self.llm.generate(prompts, params, use_tqdm=progress)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            if completion.finish_reason == "stop" and (not ids or ids[-1] not in self.eos_ids):
                ids.append(min(self.eos_ids))  # vLLM drops the stop token; mark the end of turn
            results.append(self._result(ids, settings.enable_thinking))
        return results

    def stream(self, messages, settings=None, stop_event=None) -> Iterator[tuple[str, str, bool]]:
        result = self.generate([messages], settings)[0]
        yield result.reasoning, result.answer, True


def vllm_usable() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def newest_final_model(output_dir: Path = OUTPUT_DIR) -> Path:
    """The most recently written `output/*/final` (the default model of `medsft infer` and `medsft demo`)."""
    candidates = [path for path in Path(output_dir).glob("*/final") if (path / "config.json").is_file()]
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
    backend: str = "hf",
) -> Generator:
    """Load a model folder, ModelScope id or `hf:` id. backend: "hf", "vllm" or "auto" (vLLM when usable)."""
    if backend not in {"hf", "vllm", "auto"}:
        raise ValueError(f"backend must be 'hf', 'vllm' or 'auto', not {backend!r}")
    model_dir = resolve_model_dir(model)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    if backend == "vllm" or (backend == "auto" and vllm_usable() and device.startswith("cuda")):
        return VLLMGenerator(model_dir, torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"
    causal_lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(device)
    causal_lm.eval()
    return Generator(causal_lm, tokenizer, device, model_dir)


__all__ = [
    "Generation",
    "GenerationSettings",
    "Generator",
    "VLLMGenerator",
    "load_generator",
    "newest_final_model",
    "split_reasoning",
    "vllm_usable",
]
