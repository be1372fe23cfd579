"""OpenAI's chat-completions wire format, as `medsft serve` speaks it: the request and its checks, the error
shape, and the bodies of a reply (whole, or as server-sent events).

The reasoning travels apart from the answer, under both names reasoning clients read: `reasoning_content`
(DeepSeek's API, SGLang, llama.cpp) and `reasoning` (vLLM).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medsft.chat_format import Conversation, with_system_prompt
from medsft.errors import MedsftError

MAX_STOP_SEQUENCES = 4


class APIError(MedsftError):
    """A request the server answers with an error in OpenAI's shape."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.kind, self.param, self.code, self.headers = status, kind, param, code, headers

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


def internal_error(message: str) -> APIError:
    """A failure on the server's side; what failed stays in the server's log."""
    return APIError(message, 500, "server_error", code="internal_error")


def shutting_down() -> APIError:
    """The server stops (Ctrl-C): requests under way end with this, new ones are refused with it."""
    return APIError("The server is shutting down: retry shortly.", 503, "server_error", code="shutting_down")


# --- the request --------------------------------------------------------------------------------------------


# Strict types, as OpenAI's API: "7" is not a number, true is not 1, "yes" is not true.
class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    # clients send back fields of earlier replies (reasoning_content, name, …): accepted, not used
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # fields this server does not know are ignored (as vLLM does); the ones it cannot honour are refused below
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)  # vLLM's extra: -1 or 0 turns it off
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# Fields a client may send that would change the reply in ways this server does not implement.
UNSUPPORTED = {
    "tools": "tool calls are not supported",
    "functions": "function calls are not supported",
    "logprobs": "logprobs are not supported",
    "top_logprobs": "logprobs are not supported",
    "logit_bias": "logit_bias is not supported",
    "presence_penalty": "presence_penalty is not supported (send 0 or leave it out)",
    "frequency_penalty": "frequency_penalty is not supported (send 0 or leave it out)",
}


def refuse_unsupported(request: ChatCompletionRequest) -> None:
    extra = request.model_extra or {}
    for name, reason in UNSUPPORTED.items():
        if extra.get(name) not in (None, False, 0, [], {}):
            raise APIError(reason + ".", param=name)
    response_format = extra.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        raise APIError("response_format other than text is not supported.", param="response_format")
    if request.n != 1:
        raise APIError(f"n must be 1 (one reply per request), not {request.n}.", param="n")


def parse_request(raw: bytes) -> ChatCompletionRequest:
    try:
        request = ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as error:
        raise validation_error(error.errors()) from None
    if not request.messages:
        raise APIError("messages is empty: send at least one user message.", param="messages")
    refuse_unsupported(request)
    return request


UNION_MEMBERS = {"str", "list[str]", "list[TextPart]"}  # how pydantic tags the members of the unions above


def validation_error(errors: list) -> APIError:
    # the deepest error says most (`content[0].type: Input should be 'text'` for an image part)
    first = max(
        errors, key=lambda error: len(error.get("loc", ())), default={"loc": (), "msg": "invalid request"}
    )
    # pydantic names the member of a union that failed (`str`, `list[TextPart]`): not a field of the request
    location = [part for part in first.get("loc", ()) if part != "body" and part not in UNION_MEMBERS]
    param = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    if first.get("type") == "json_invalid":
        return APIError(f"The body is not valid JSON: {first.get('msg')}.")
    return APIError(f"{param or 'body'}: {first.get('msg')}.", param=param or None)


def conversation(request: ChatCompletionRequest, system_prompt: str) -> Conversation:
    """Role and text of each message: reasoning sent back in earlier replies is left out of the prompt
    (the chat template also drops it from the content of turns before the last question). `system_prompt`
    is added when the request has no system message ("" adds none)."""
    messages = []
    for index, message in enumerate(request.messages):
        if message.role == "user" and message.content is None:
            raise APIError("A user message has no content.", param=f"messages[{index}].content")
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text()})
    if messages[-1]["role"] != "user":
        raise APIError("The last message must be the user's.", param="messages")
    return with_system_prompt(messages, system_prompt)


def enable_thinking(request: ChatCompletionRequest, default: bool) -> bool:
    value = (request.chat_template_kwargs or {}).get("enable_thinking", default)
    if not isinstance(value, bool):
        raise APIError("enable_thinking must be true or false.", param="chat_template_kwargs.enable_thinking")
    return value


def stop_sequences(request: ChatCompletionRequest) -> list[str]:
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > MAX_STOP_SEQUENCES or any(not stop for stop in stops):
        raise APIError(f"stop takes up to {MAX_STOP_SEQUENCES} non-empty strings.", param="stop")
    return stops


# --- the reply ----------------------------------------------------------------------------------------------


def reasoning_fields(reasoning: str | None) -> dict:
    """The reasoning under both names reasoning clients read: DeepSeek's and vLLM's."""
    return {"reasoning_content": reasoning, "reasoning": reasoning}


def assistant_message(reasoning: str, answer: str) -> dict:
    return {"role": "assistant", "content": answer, **reasoning_fields(reasoning or None)}


def delta(reasoning: str, answer: str) -> dict:
    """A streamed chunk's new text; empty when there is none."""
    fields: dict[str, Any] = reasoning_fields(reasoning) if reasoning else {}
    if answer:
        fields["content"] = answer
    return fields


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def sse(body: dict | str) -> str:
    """One server-sent event."""
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n"


STREAM_END = sse("[DONE]")


@dataclass(frozen=True)
class Completion:
    """The id, creation time and model name that every body of one reply carries."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, message: dict, finish_reason: str | None, counts: dict) -> dict:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head("chat.completion"), "choices": [choice], "usage": counts}

    def chunk(self, fields: dict, finish_reason: str | None = None, with_usage: bool = False) -> str:
        """A streamed chunk; with_usage: `usage: null`, as OpenAI sends it when a last chunk carries it."""
        choice = {"index": 0, "delta": fields, "logprobs": None, "finish_reason": finish_reason}
        body = {**self._head("chat.completion.chunk"), "choices": [choice]}
        if with_usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self, counts: dict) -> str:
        return sse({**self._head("chat.completion.chunk"), "choices": [], "usage": counts})


def model_card(name: str, root: str, max_context: int, backend: str, run_card: dict | None) -> dict:
    """The served model as `GET /v1/models` lists it (vLLM's fields `root`, `max_model_len`, and ours)."""
    return {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "medsft",
        "root": root,
        "max_model_len": max_context,
        "backend": backend,
        "run_card": run_card,
    }
