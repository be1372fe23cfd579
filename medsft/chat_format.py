"""Qwen3's chat format, in one place: its special tokens, a row's messages, and reading reasoning back.

An assistant turn with reasoning is `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`: the content that
Qwen3's own chat template renders verbatim after `<|im_start|>assistant\\n`. Every other module builds and
reads turns through the functions here, never through literal tag strings.
"""

from __future__ import annotations

from typing import NamedTuple

from medsft.errors import MedsftError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TURN_START = "<|im_start|>"
END_OF_TURN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"  # also Qwen3's bos and the tokenizer's eos
THINK_TAGS = (THINK_OPEN, THINK_CLOSE)
# Qwen3's soft switches: a user turn holding one asks for the non-thinking (or the thinking) mode, with
# enable_thinking left True; the last one in a conversation wins. Message text carries them as typed.
NO_THINK_SWITCH = "/no_think"
THINK_SWITCH = "/think"
SOFT_SWITCHES = (THINK_SWITCH, NO_THINK_SWITCH)
CHAT_TOKENS = (TURN_START, END_OF_TURN, PAD_TOKEN)

DEFAULT_SYSTEM_PROMPT = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"

Message = dict[str, str]
Conversation = list[Message]


def assistant_content(reasoning: str, answer: str) -> str:
    """An assistant turn's content with its reasoning, as Qwen3's template renders it."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def is_non_thinking(messages: Conversation) -> bool:
    """A row of the non-thinking mode: its assistant turn's think block is empty, as Qwen3 renders a turn
    generated with enable_thinking=False."""
    last = messages[-1] if messages else {}
    return last.get("role") == "assistant" and last.get("content", "").startswith(assistant_content("", ""))


def without_reasoning(messages: Conversation) -> Conversation:
    """The same row in the non-thinking mode: its last assistant turn keeps the answer, with an empty think
    block."""
    *head, last = messages
    return [
        *head,
        {"role": "assistant", "content": assistant_content("", split_reasoning(last["content"]).answer)},
    ]


def build_messages(
    question: str, reasoning: str, answer: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> Conversation:
    """[system, user, assistant]; an empty system prompt leaves the system turn out."""
    return [
        *prompt_messages(question, system_prompt),
        {"role": "assistant", "content": assistant_content(reasoning, answer)},
    ]


def prompt_messages(question: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Conversation:
    """[system, user]: what the model is asked; an empty system prompt leaves the system turn out."""
    return with_system_prompt([{"role": "user", "content": question}], system_prompt)


def with_system_prompt(messages: Conversation, system_prompt: str) -> Conversation:
    """The conversation with `system_prompt` as its first turn when it has no system turn of its own; an empty
    system prompt adds none. The input is not changed."""
    if system_prompt and not any(message.get("role") == "system" for message in messages):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def replace_system_turn(messages: Conversation, system_prompt: str) -> Conversation:
    """The conversation with `system_prompt` as its one leading system turn ("" leaves it out), replacing the
    one it had. A system turn after the first message is a ValueError: replacing it would change what the
    conversation says at that point."""
    if any(message["role"] == "system" for message in messages[1:]):
        raise ValueError("it has a system turn after its first message")
    rest = messages[1:] if messages and messages[0]["role"] == "system" else messages
    return [*([{"role": "system", "content": system_prompt}] if system_prompt else []), *rest]


def leading_system_prompt(messages: Conversation) -> str:
    """The content of the conversation's leading system turn; "" when it has none."""
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else ""


def without_answer(messages: Conversation) -> Conversation:
    """The conversation up to the last user turn: the prompt of a training row."""
    return [message for message in messages if message["role"] != "assistant"]


class ReasonedText(NamedTuple):
    """A model output read back: its reasoning, its answer, and whether it has Qwen3's shape."""

    reasoning: str
    answer: str
    # exactly one <think>…</think> block first, then a non-empty answer
    well_formed: bool


def split_reasoning(text: str) -> ReasonedText:
    """Reasoning and answer of a model output; also works on partial (streaming) output.

    While the think block is still open everything is reasoning and the answer is empty. Without any think
    tags (thinking disabled) the whole text is the answer and `well_formed` is False by this definition.
    """
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        body = stripped[len(THINK_OPEN) :]
        if THINK_CLOSE not in body:
            return ReasonedText(body.strip(), "", False)
        reasoning, answer = (part.strip() for part in body.split(THINK_CLOSE, 1))
        extra_tags = any(tag in part for tag in THINK_TAGS for part in (reasoning, answer))
        return ReasonedText(reasoning, answer, bool(answer) and not extra_tags)
    if THINK_CLOSE in stripped:  # opening tag missing (e.g. put in the prompt by some templates)
        reasoning, answer = (part.strip() for part in stripped.split(THINK_CLOSE, 1))
        return ReasonedText(reasoning, answer, False)
    return ReasonedText("", stripped.strip(), False)


def reasoning_token_count(ids: list[int], think_close_id: int, text: str) -> int:
    """Reasoning tokens of generated ids (end-of-turn token excluded) whose decoded text is `text`: up to and
    including the closing think tag, or all of them while the think block is still open."""
    if think_close_id in ids:
        return ids.index(think_close_id) + 1
    return len(ids) if text.lstrip().startswith(THINK_OPEN) else 0


def contains_think_tag(text: str) -> bool:
    return any(tag in text for tag in THINK_TAGS)


def special_token_ids(tokenizer) -> dict[str, int]:
    """Ids of the format's tokens in a tokenizer: {"think_open", "think_close", "end_of_turn", "pad"}."""
    names = {
        "think_open": THINK_OPEN,
        "think_close": THINK_CLOSE,
        "end_of_turn": END_OF_TURN,
        "pad": PAD_TOKEN,
    }
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in names.items()}


def render_prompt(tokenizer, messages: Conversation, enable_thinking: bool = True) -> str:
    """The conversation as the model continues it: the tokenizer's chat template with the assistant turn
    opened (enable_thinking=False puts Qwen3's empty think block in the prompt)."""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def looks_like_markup(token: str) -> bool:
    """`<tool_call>`, `<|fim_pad|>`: a format token, unlike an added plain word such as a drug name."""
    return token.startswith("<") and token.endswith(">") and len(token) > 2


def format_tokens(tokenizer) -> tuple[str, ...]:
    """Texts the tokenizer turns into one format token (chat, vision, tool, FIM … tokens): its special tokens
    and tag-like added tokens. The reasoning tags are not among them (they have rules of their own)."""
    added = tokenizer.added_tokens_decoder.values()
    found = {token.content for token in added if token.special or looks_like_markup(token.content)}
    found |= set(tokenizer.all_special_tokens)
    return tuple(sorted((found | set(CHAT_TOKENS)) - set(THINK_TAGS) - {""}))


class ControlTokenInText(MedsftError):
    """A message whose text holds a format token: encoded, it would become a real control token (a user could
    forge a turn), so it is refused, naming the message."""

    def __init__(self, index: int, role: str, token: str):
        super().__init__(
            f"message {index} ({role}) holds {token!r}, a control token of the chat format: message text "
            "cannot contain it."
        )
        self.index, self.role, self.token = index, role, token


def check_message_text(tokenizer, messages: Conversation) -> None:
    """Message text stays text: no format token anywhere, and no reasoning tag outside assistant turns (whose
    reasoning the chat template reads from the tags)."""
    tokens = format_tokens(tokenizer)
    for index, message in enumerate(messages):
        refused = tokens if message["role"] == "assistant" else (*tokens, *THINK_TAGS)
        found = next((token for token in refused if token in message["content"]), None)
        if found is not None:
            raise ControlTokenInText(index, message["role"], found)


def prompt_token_ids(tokenizer, messages: Conversation, enable_thinking: bool = True) -> list[int]:
    """The ids of `render_prompt`: the template's own control tokens, and message text that holds none."""
    check_message_text(tokenizer, messages)
    prompt = render_prompt(tokenizer, messages, enable_thinking)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def reply_end_ids(tokenizer, configured: int | list[int] | None = None) -> set[int]:
    """The ids that end a reply: the format's end of turn, the tokenizer's eos and the model's configured
    eos (generation_config.eos_token_id: one id, a list or None)."""
    ids = set(configured if isinstance(configured, list) else [] if configured is None else [configured])
    eos_token = tokenizer.eos_token
    eos = tokenizer.convert_tokens_to_ids(eos_token) if eos_token else None
    for token_id in (special_token_ids(tokenizer)["end_of_turn"], eos):
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return ids
