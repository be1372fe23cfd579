"""The model behind `medsft serve`: its tokenizer (prompts in, replies out) and a decoding engine that answers
concurrent requests together (medsft.batching), loaded for the backend that runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.batching import ContinuousBatcher, VLLMEngine
from medsft.chat_format import reply_end_ids
from medsft.generate import load_generator, pick_device, pick_dtype, resolve_backend
from medsft.model import resolve_model_dir
from medsft.provenance import read_run_card


@dataclass
class ServedModel:
    """What the server answers with: a tokenizer for prompts and replies, and an engine that decodes."""

    name: str
    tokenizer: Any
    eos_ids: set[int]
    max_context: int
    engine: ContinuousBatcher | VLLMEngine
    backend: str
    device: str
    model_dir: Path | None = None
    run_card: dict | None = None

    def close(self) -> None:
        if isinstance(self.engine, VLLMEngine):
            self.engine.shutdown()


def load_model(
    model: str | Path,
    name: str,
    backend: str = "auto",
    device: str | None = None,
    dtype: str | None = None,
    max_batch_size: int = 16,
    max_model_len: int | None = None,
) -> ServedModel:
    """Load a model and its engine: vLLM's where the backend resolves to vLLM ("auto": on a GPU with vLLM
    installed), else the request batcher over the transformers model."""
    if resolve_backend(backend, device) == "vllm":
        return _load_vllm(model, name, pick_device(device), dtype, max_batch_size, max_model_len)
    generator = load_generator(model, device=device, dtype=dtype, backend="hf")
    tokenizer = generator.tokenizer
    engine = ContinuousBatcher(generator.model, generator.eos_ids, tokenizer.pad_token_id, max_batch_size)
    max_context = min(generator.max_context, max_model_len or generator.max_context)
    model_dir = generator.model_dir
    return ServedModel(
        name,
        tokenizer,
        set(generator.eos_ids),
        max_context,
        engine,
        "hf",
        generator.device,
        model_dir,
        read_run_card(model_dir),
    )


def _load_vllm(
    model: str | Path,
    name: str,
    device: str,
    dtype: str | None,
    max_batch_size: int,
    max_model_len: int | None,
) -> ServedModel:
    from transformers import AutoTokenizer, GenerationConfig

    model_dir = resolve_model_dir(model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    try:
        configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    eos_ids = reply_end_ids(tokenizer, configured)
    dtype_name = str(pick_dtype(device, dtype)).removeprefix("torch.")
    engine = VLLMEngine(model_dir, dtype_name, eos_ids, max_batch_size, max_model_len)
    card = read_run_card(model_dir)
    return ServedModel(name, tokenizer, eos_ids, engine.max_context, engine, "vllm", device, model_dir, card)
