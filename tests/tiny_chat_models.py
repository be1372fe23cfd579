"""Tiny Qwen3 models with predictable outputs for the generation, CLI and demo tests."""

from __future__ import annotations

from pathlib import Path

import torch

THINKING_REPLY_REASONING = "患者头痛，需考虑紧张性头痛。"
THINKING_REPLY_ANSWER = "建议规律作息，必要时就医。"
_TRAIN_QUESTIONS = [
    "你好",
    "头痛怎么办？",
    "高血压吃什么药",
    "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？",
]


def _base(tokenizer):
    from medsft.model import build_tiny_qwen3

    model = build_tiny_qwen3(tokenizer)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
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
    """A tiny Qwen3 that memorised one reply, `<think>REASONING</think>ANSWER`, to any question."""
    out = base / "thinking-qwen3"
    if (out / "config.json").is_file():
        return out
    model = _base(tokenizer)
    target = f"<think>\n{THINKING_REPLY_REASONING}\n</think>\n\n{THINKING_REPLY_ANSWER}<|im_end|>"
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    sequences, labels = [], []
    for question in _TRAIN_QUESTIONS:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequences.append(prompt_ids + target_ids)
        labels.append([-100] * len(prompt_ids) + target_ids)
    width = max(map(len, sequences))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in sequences])  # right padding
    label_ids = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences])
    # logits only where the reply is predicted: the 150k-token output layer dominates the cost
    predicted = label_ids[:, 1:] != -100
    targets = label_ids[:, 1:][predicted]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    torch.manual_seed(0)
    for _ in range(60):
        hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state[:, :-1]
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[predicted]), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.02:
            break
    model.eval()
    return _save(model, tokenizer, out)
