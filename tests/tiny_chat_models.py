"""Tiny Qwen3 models with predictable outputs for the generation, CLI and demo tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, END_OF_TURN, assistant_content, special_token_ids

THINKING_REPLY_REASONING = "患者头痛，需考虑紧张性头痛。"
THINKING_REPLY_ANSWER = "建议规律作息，必要时就医。"
_TRAIN_QUESTIONS = [
    "你好",
    "头痛怎么办？",
    "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？",
]
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
    """A tiny Qwen3 that memorised one reply, REASONING in a think block then ANSWER, to any question."""
    out = base / "thinking-qwen3"
    if (out / "config.json").is_file():
        return out
    model = _base(tokenizer)
    target = assistant_content(THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER) + END_OF_TURN
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    sequences, labels = [], []
    for question, system in itertools.product(_TRAIN_QUESTIONS, ([], [DEFAULT_SYSTEM_TURN])):
        prompt = tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequences.append(prompt_ids + target_ids)
        labels.append([-100] * len(prompt_ids) + target_ids)
    width = max(map(len, sequences))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in sequences])  # right padding
    label_ids = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences])
    # Only the tokens seen here keep an embedding (trained as a small separate matrix); every other row is
    # zero, so its logit is exactly 0. The loss below is then the exact full-vocabulary cross-entropy while
    # computing ~100 logits instead of 151k: all zero-logit tokens together are one column, log(count).
    active = sorted({token for ids in sequences for token in ids} | {pad})
    position_in_active = {token: index for index, token in enumerate(active)}
    embedding = model.get_input_embeddings().weight
    active_rows = torch.nn.Parameter(embedding.detach()[active].clone())
    inactive_column = torch.log(torch.tensor(float(embedding.shape[0] - len(active))))
    local_ids = input_ids.apply_(position_in_active.__getitem__)
    predicted = label_ids[:, 1:] != -100
    targets = torch.tensor([position_in_active[token] for token in label_ids[:, 1:][predicted].tolist()])
    body = [parameter for name, parameter in model.model.named_parameters() if "embed_tokens" not in name]
    optimizer = torch.optim.AdamW([*body, active_rows], lr=1e-2, weight_decay=0.0)
    model.train()
    torch.manual_seed(0)
    for _ in range(300):
        hidden = model.model(inputs_embeds=active_rows[local_ids], attention_mask=attention).last_hidden_state
        logits = hidden[:, :-1][predicted] @ active_rows.T
        logits = torch.cat([logits, inactive_column.expand(len(logits), 1)], dim=1)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    with torch.no_grad():
        embedding.zero_()
        embedding[active] = active_rows
    model.eval()
    return _save(model, tokenizer, out)
