"""The teacher-forced loss of a held-out assistant turn, reasoning and answer apart (`medsft eval`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from medsft import metrics
from medsft.chat_format import special_token_ids
from medsft.errors import MedsftError
from medsft.metrics import SegmentLoss
from medsft.thinking_modes import training_examples


class TurnLoss(NamedTuple):
    """The teacher-forced loss of one assistant turn, in two parts."""

    reasoning: SegmentLoss
    answer: SegmentLoss  # the answer, the end-of-turn token and the template's newline after it
    answer_text_tokens: int  # answer tokens before the end-of-turn token (as a generation's are counted)


def rendered_turn(tokenizer, example: dict[str, Any]) -> tuple[str, str]:
    """(whole text, prompt text) of a training example (medsft.thinking_modes) as TRL's SFTTrainer renders
    it: a `messages` example with the chat template as it stands, a prompt/completion example with its own
    `chat_template_kwargs` (enable_thinking=False puts the empty think block in the prompt)."""
    if "messages" in example:
        messages, kwargs = example["messages"], {}
        prompt_messages = messages[:-1]
    else:
        prompt_messages, kwargs = example["prompt"], example.get("chat_template_kwargs") or {}
        messages = [*prompt_messages, *example["completion"]]
    full = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    prompt = tokenizer.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=True, **kwargs
    )
    return full, prompt


@torch.inference_mode()
def teacher_forced_losses(
    model,
    tokenizer,
    conversations: list[list[dict]],
    batch_size: int = 4,
    chunk: int = 512,
    empty_think_loss: bool = False,
) -> list[TurnLoss]:
    """Summed NLL and token counts of each conversation's last (assistant) turn: the tokens training learns
    from, so that the pooled loss equals the trainer's eval_loss on the same rows.

    Each conversation is rendered as training renders it (medsft.thinking_modes.training_examples with the
    recipe's `empty_think_loss`): a thinking row with the tokenizer's chat template, its assistant turn
    starting after the generation prompt; a non-thinking row (an empty think block) in its own mode, the
    empty block in the prompt (false: the loss starts at the answer, where generation with
    enable_thinking=False starts) or in the reply after the `/no_think` switch (true). The reasoning part
    runs from `<think>` to `</think>` inclusive, the answer part from after `</think>` (or from the start of
    the scored turn when it holds no `</think>`) to the end of the turn (`<|im_end|>` and the newline the
    template writes after it). Logits are computed in chunks of positions so a 150k vocabulary never
    materialises for a whole batch.
    """
    format_ids = special_token_ids(tokenizer)
    think_close_id, end_id = format_ids["think_close"], format_ids["end_of_turn"]
    examples = training_examples([{"messages": m} for m in conversations], empty_think_loss)
    encoded = []
    for example in examples:
        full, prompt = rendered_turn(tokenizer, example)
        if not full.startswith(prompt):
            raise MedsftError("the chat template does not render the prompt as a prefix of the conversation")
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if ids[: len(prompt_ids)] != prompt_ids:
            raise MedsftError("the prompt's tokens are not a prefix of the conversation's tokens")
        reasoning, answer = metrics.assistant_segments(ids, len(prompt_ids), think_close_id)
        encoded.append((ids, reasoning, answer))

    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    results: list[TurnLoss | None] = [None] * len(encoded)
    for begin in range(0, len(order), batch_size):
        indices = order[begin : begin + batch_size]
        width = max(len(encoded[i][0]) for i in indices)
        input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            ids = encoded[i][0]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        hidden = model.base_model(input_ids=input_ids.to(device), attention_mask=attention.to(device))[0]
        for row, i in enumerate(indices):
            ids, reasoning, answer = encoded[i]
            first = reasoning.start if len(reasoning) else answer.start
            targets = torch.tensor(ids[first : answer.stop], device=device)
            token_nll = [0.0] * first
            for offset in range(0, len(targets), chunk):
                positions = slice(first - 1 + offset, first - 1 + min(offset + chunk, len(targets)))
                logits = head(hidden[row, positions]).float()
                nll = torch.nn.functional.cross_entropy(
                    logits, targets[offset : offset + chunk], reduction="none"
                )
                token_nll.extend(nll.tolist())
            reasoning_loss, answer_loss = metrics.segment_losses(token_nll, reasoning, answer)
            answer_ids = ids[answer.start : answer.stop]
            text_tokens = answer_ids.index(end_id) if end_id in answer_ids else len(answer_ids)
            results[i] = TurnLoss(reasoning_loss, answer_loss, text_tokens)
    return results  # type: ignore[return-value]
