"""How a converted row of each Qwen3 mode becomes a training example for TRL's SFTTrainer.

A thinking row (`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`) trains as its `messages`, the loss on the
assistant turn. A non-thinking row (an empty think block: medsft.chat_format.is_non_thinking) trains one of
two ways, chosen by the recipe's `empty_think_loss`:

- false (the default): the empty block `<think>\\n\\n</think>\\n\\n` belongs to the prompt, exactly as Qwen3's
  template writes it when inference passes enable_thinking=False; the loss starts at the answer, where
  generation starts. Every row then trains as a prompt/completion pair whose prompt is rendered with the
  row's own `enable_thinking` (TRL reads it from `chat_template_kwargs`), so the completion mask starts where
  the prompt that inference builds ends.
- true: the empty block belongs to the reply and carries loss, and the user turn ends with Qwen3's soft switch
  `/no_think`: the model learns to write the empty block itself when asked that way (the switch works with
  enable_thinking left True). Without the switch in the row, a loss on empty blocks would teach the model to
  skip its reasoning at random.

Rows without a non-thinking turn keep the plain `messages` form either way: the single-set path is unchanged.
"""

from __future__ import annotations

from typing import Any

from medsft.chat_format import NO_THINK_SWITCH, Conversation, is_non_thinking


def with_no_think_switch(messages: Conversation) -> Conversation:
    """The row with Qwen3's `/no_think` switch at the end of its last user turn."""
    last_user = max(i for i, message in enumerate(messages) if message["role"] == "user")
    turn = messages[last_user]
    switched = {**turn, "content": f"{turn['content']} {NO_THINK_SWITCH}"}
    return [*messages[:last_user], switched, *messages[last_user + 1 :]]


def prompt_completion(messages: Conversation) -> dict[str, Any]:
    """A prompt/completion example rendered in the row's own mode."""
    return {
        "prompt": messages[:-1],
        "completion": messages[-1:],
        "chat_template_kwargs": {"enable_thinking": not is_non_thinking(messages)},
    }


def training_examples(
    rows: list[dict[str, Any]], empty_think_loss: bool, prompt_completion_form: bool | None = None
) -> list[dict[str, Any]]:
    """The SFTTrainer examples of `medsft data` rows (each with a `messages` list). `prompt_completion_form`
    says whether thinking rows take the prompt/completion form too (default: when these rows hold a
    non-thinking one); see split_examples."""
    conversations = [row["messages"] for row in rows]
    if empty_think_loss:
        return [{"messages": with_no_think_switch(m) if is_non_thinking(m) else m} for m in conversations]
    if prompt_completion_form is None:
        prompt_completion_form = any(is_non_thinking(m) for m in conversations)
    if not prompt_completion_form:
        return [{"messages": m} for m in conversations]
    return [prompt_completion(m) for m in conversations]


def split_examples(splits: list[list[dict[str, Any]]], empty_think_loss: bool) -> list[list[dict[str, Any]]]:
    """The examples of each split, all in one form: TRL picks the loss mask (completion only, or assistant
    turns) from the train split's first example and applies it to every split, so a val split with
    non-thinking rows beside a train split without any must not take another form."""
    mixed = any(is_non_thinking(row["messages"]) for rows in splits for row in rows)
    return [training_examples(rows, empty_think_loss, mixed) for rows in splits]
