"""Tiny Qwen3 models with predictable outputs for the generation, CLI and demo tests."""

from __future__ import annotations

from pathlib import Path

import torch

from medsft.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    END_OF_TURN,
    assistant_content,
    render_prompt,
    special_token_ids,
)

THINKING_REPLY_REASONING = "患者头痛需考虑紧张性因素。"
THINKING_REPLY_ANSWER = "建议规律作息，必要时就医。"
DEFAULT_SYSTEM_TURN = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def _base(tokenizer):
    from medsft.model import build_tiny_qwen3

    model = build_tiny_qwen3(tokenizer)
    model.generation_config.eos_token_id = [special_token_ids(tokenizer)["end_of_turn"]]
    return model


def _save(model, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def diverse_model_dir(base: Path, tokenizer) -> Path:
    """Random weights with a large spread: greedy outputs differ per prompt (0.02-init ones repeat)."""
    out = base / "diverse-qwen3"
    if (out / "config.json").is_file():
        return out
    model = _base(tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.5)
    return _save(model, tokenizer, out)


def thinking_model_dir(base: Path, tokenizer) -> Path:
    """A Qwen3 whose weights are set by hand so that after any chat prompt greedy decoding (and sampling: each
    step wins by tens of logits) gives one fixed reply, REASONING in a think block then ANSWER, on every CPU.

    The reply is a chain of tokens, each with one successor, read off the last token by the output layer. The
    newline alone has two: after the prompt's `assistant` line it is followed by `<think>`, after `<think>` by
    the reasoning. An attention head looks for a `<think>` in the context (only that token has a key), an MLP
    unit fires for "newline and `<think>` seen" and switches the successor. With thinking off the prompt ends
    in `</think>` and a blank line, whose successor is the answer."""
    out = base / "scripted-qwen3"
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen3Config, Qwen3ForCausalLM

    chat_tokens = special_token_ids(tokenizer)
    reply = assistant_content(THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER) + END_OF_TURN
    chain = tokenizer(reply, add_special_tokens=False)["input_ids"]
    newline, think_open = chain[1], chat_tokens["think_open"]
    assert chain[0] == think_open and tokenizer.decode([newline]) == "\n", (
        "the reply starts with <think>, newline"
    )
    successor = {newline: think_open}
    successor_after_think = chain[2]
    for token, following in zip(chain[1:], chain[2:], strict=False):
        if token == newline:
            continue
        assert token not in successor, f"token {tokenizer.decode([token])!r} has two successors in the reply"
        successor[token] = following
    successor[chain[0]] = chain[1]
    # Coordinates of the residual stream: one per token of the script, a constant one, and two state flags.
    script_tokens = sorted({newline, *chain})
    coordinate = {token: index for index, token in enumerate(script_tokens)}
    constant, think_seen, newline_after_think = (
        len(script_tokens),
        len(script_tokens) + 1,
        len(script_tokens) + 2,
    )
    hidden, head_dim = 64, 16
    assert newline_after_think < hidden
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=head_dim,
        attention_bias=True,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=chat_tokens["end_of_turn"],
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (
            model.model.norm,
            model.model.layers[0].input_layernorm,
            model.model.layers[0].post_attention_layernorm,
        ):
            norm.weight.fill_(1.0)
        embedding = model.get_input_embeddings().weight
        embedding[:, constant] = 1.0
        for token, index in coordinate.items():
            embedding[token, index] = 1.0
        normed_unit = (hidden / 2) ** 0.5  # a one-hot token plus the constant after RMSNorm
        attention = model.model.layers[0].self_attn
        # The lowest rotary frequency: scores barely move with distance (cos > 0.99 within 8k positions).
        slow = head_dim // 2 - 1
        attention.q_proj.bias[slow] = 1.0
        attention.k_proj.weight[slow, coordinate[think_open]] = 1.0
        attention.q_norm.weight.fill_(15.0**0.5)
        attention.k_norm.weight.fill_(15.0**0.5)  # score of a <think> key: sqrt(16) * 15 = 60, all others 0
        attention.v_proj.weight[0, coordinate[think_open]] = 1.0 / normed_unit
        attention.o_proj.weight[think_seen, 0] = 1.0
        mlp = model.model.layers[0].mlp
        mlp.gate_proj.weight[0, coordinate[newline]] = 20.0
        mlp.gate_proj.weight[0, think_seen] = 20.0
        mlp.gate_proj.weight[0, constant] = -30.0
        mlp.up_proj.weight[0, constant] = 1.0
        fired = torch.nn.functional.silu(torch.tensor(10.0 * (hidden / 3) ** 0.5)) * (hidden / 3) ** 0.5
        mlp.down_proj.weight[newline_after_think, 0] = 1.0 / fired.item()
        head, margin = model.lm_head.weight, 10.0
        for token, following in successor.items():
            head[following, coordinate[token]] += margin
        head[think_open, newline_after_think] -= 3 * margin
        head[successor_after_think, newline_after_think] += margin
    model.generation_config.eos_token_id = [chat_tokens["end_of_turn"]]
    model.eval()
    _check_reply_on_every_prompt_shape(model, tokenizer, chain)
    return _save(model, tokenizer, out)


# Prompt shapes the tests send: thinking on and off, with and without a system turn, short, long, English,
# a second turn after an earlier reply.
_CHECK_CONVERSATIONS = [
    [{"role": "user", "content": "你好"}],
    [
        DEFAULT_SYSTEM_TURN,
        {"role": "user", "content": "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？" * 20},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Cough for 3 weeks?"},
    ],
    [
        DEFAULT_SYSTEM_TURN,
        {"role": "user", "content": "头痛怎么办？"},
        {"role": "assistant", "content": THINKING_REPLY_ANSWER},
        {"role": "user", "content": "还需要做什么检查？"},
    ],
]
_MIN_MARGIN = 20.0  # logits; kernel paths differ by far less than 1e-3


def _check_reply_on_every_prompt_shape(model, tokenizer, chain: list[int]) -> None:
    """Greedy decoding gives the reply after every prompt shape, each token winning by _MIN_MARGIN logits."""
    answer_start = chain.index(tokenizer.convert_tokens_to_ids("</think>")) + 2
    for conversation in _CHECK_CONVERSATIONS:
        for thinking in (True, False):
            prompt = tokenizer(render_prompt(tokenizer, conversation, thinking), return_tensors="pt")
            expected = chain if thinking else chain[answer_start:]
            with torch.no_grad():
                out = model.generate(
                    **prompt,
                    do_sample=False,
                    max_new_tokens=len(expected) + 2,
                    output_logits=True,
                    return_dict_in_generate=True,
                    pad_token_id=tokenizer.pad_token_id,
                )
            generated = out.sequences[0, prompt["input_ids"].shape[1] :].tolist()
            margins = [(lambda top: top[0] - top[1])(step[0].topk(2).values.tolist()) for step in out.logits]
            assert generated == expected and min(margins) >= _MIN_MARGIN, (
                f"scripted model, thinking={thinking}: {tokenizer.decode(generated)!r}, margins {margins}"
            )
