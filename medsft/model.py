"""Model and tokenizer sources (ModelScope id, local folder, Hugging Face id); tiny Qwen3 stand-ins."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM


class ModelSourceError(RuntimeError):
    """A model or tokenizer could not be found locally nor downloaded."""


def resolve_model_dir(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local folder as is; `hf:<id>` from the Hugging Face hub; else a ModelScope id (downloaded once)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    source = str(source)
    if path.exists() or source.startswith((".", "/", "~")):
        raise ModelSourceError(f"Model path {source!r} is not a folder with a model in it.")
    try:
        if source.startswith("hf:"):
            from huggingface_hub import snapshot_download as hf_snapshot_download

            return Path(hf_snapshot_download(source[3:], cache_dir=cache_dir))
        from modelscope import snapshot_download

        return Path(snapshot_download(source, cache_dir=str(cache_dir) if cache_dir else None))
    except Exception as error:  # network, auth or "not found": one clear message for all
        download = (
            f"hf download {source[3:]} --local-dir DIR"
            if source.startswith("hf:")
            else f"modelscope download --model {source} --local_dir DIR"
        )
        raise ModelSourceError(
            f"Could not get model {source!r} ({type(error).__name__}: {error}). Without network access, "
            f"download it on another machine (e.g. `{download}`) and pass the local folder instead: "
            'MODEL=/path/to/DIR, or `model: /path/to/DIR` in a recipe (make train ARGS="--model DIR").'
        ) from error


def original_qwen3_chat_template() -> str:
    """Qwen3's own chat template as TRL ships it (used to restore it after TRL's training variant)."""
    return resources.files("trl").joinpath("chat_templates/qwen3.jinja").read_text(encoding="utf-8")


def load_tokenizer(source: str | Path, cache_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(source, cache_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def build_tiny_qwen3(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
) -> Qwen3ForCausalLM:
    """A random-weight Qwen3 with the real architecture and the tokenizer's vocabulary: a weights stand-in."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)


def build_offline_qwen3_tokenizer() -> PreTrainedTokenizerBase:
    """A small byte-level tokenizer with Qwen3's chat tokens and original chat template, built offline.

    Every UTF-8 byte is one token (no merges), so any text round-trips; `<think>`, `<|im_end|>` etc. are
    single special tokens as in the real tokenizer. Stands in for the real one where it cannot be downloaded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN3_SPECIAL_TOKENS[1:]),
        chat_template=original_qwen3_chat_template(),
    )
    return tokenizer
