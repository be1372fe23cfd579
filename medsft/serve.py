"""`medsft serve`: an OpenAI-compatible chat-completions API, the reasoning returned apart from the answer.

`POST /v1/chat/completions` (streamed as server-sent events or not), `GET /v1/models`, `GET /health`. The
reply's reasoning comes back in `reasoning_content` (DeepSeek API, SGLang, llama.cpp) and `reasoning` (vLLM),
the answer in `content`; `usage` counts reasoning tokens. Concurrent requests are decoded together
(medsft.batching); on a GPU with vLLM installed, vLLM's engine decodes behind the same endpoints. Errors have
OpenAI's shape and status codes.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from medsft.batching import ContinuousBatcher, Sampling, VLLMEngine
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, THINK_OPEN, special_token_ids, split_reasoning
from medsft.errors import MedsftError

log = logging.getLogger(__name__)

API_KEY_ENV = "MEDSFT_API_KEY"
MAX_STOP_SEQUENCES = 4
LOOPBACK_NAMES = {"localhost"}


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


# --- the request --------------------------------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    # clients send back fields of earlier replies (reasoning_content, name, …): accepted, not used
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # fields this server does not know are ignored (as vLLM does); the ones it cannot honour are refused below
    model_config = ConfigDict(extra="allow")

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


# --- the served model ---------------------------------------------------------------------------------------


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


@dataclass
class ServerSettings:
    """Request defaults and limits of one server."""

    max_tokens: int = 1024  # when a request does not say
    temperature: float = 0.6  # Qwen3's recommended thinking-mode sampling
    top_p: float = 0.95
    top_k: int = 20
    enable_thinking: bool = True
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # used when a request has no system message; "" for none
    api_key: str | None = None
    max_queue: int = 64  # requests waiting beyond the engine's batch; more get 503


@dataclass
class Server:
    model: ServedModel
    settings: ServerSettings = field(default_factory=ServerSettings)
    in_flight: int = 0  # touched only from the event loop

    @property
    def capacity(self) -> int:
        return self.model.engine.max_batch_size + self.settings.max_queue

    def conversation(self, request: ChatCompletionRequest) -> list[dict[str, str]]:
        """Role and text of each message: reasoning sent back in earlier replies is left out of the prompt
        (the chat template also drops it from the content of turns before the last question)."""
        messages = []
        for index, message in enumerate(request.messages):
            if message.role == "user" and message.content is None:
                raise APIError("A user message has no content.", param=f"messages[{index}].content")
            role = "system" if message.role == "developer" else message.role
            messages.append({"role": role, "content": message.text()})
        if messages[-1]["role"] != "user":
            raise APIError("The last message must be the user's.", param="messages")
        system = self.settings.system_prompt
        if system and not any(message["role"] == "system" for message in messages):
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def enable_thinking(self, request: ChatCompletionRequest) -> bool:
        value = (request.chat_template_kwargs or {}).get("enable_thinking", self.settings.enable_thinking)
        if not isinstance(value, bool):
            raise APIError(
                "enable_thinking must be true or false.", param="chat_template_kwargs.enable_thinking"
            )
        return value

    def prompt_ids(self, messages: list[dict[str, str]], enable_thinking: bool) -> list[int]:
        tokenizer = self.model.tokenizer
        prompt = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
        )
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def sampling(self, request: ChatCompletionRequest, prompt_tokens: int) -> Sampling:
        context = self.model.max_context
        room = context - prompt_tokens
        if room < 1:
            raise APIError(
                f"The prompt has {prompt_tokens} tokens and the model's context is {context}: "
                "shorten the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        asked = request.max_completion_tokens or request.max_tokens
        if asked is not None and asked > room:
            raise APIError(
                f"The prompt ({prompt_tokens} tokens) plus max_tokens ({asked}) does not fit the model's "
                f"context ({context}): ask for at most {room} tokens or shorten the messages.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        defaults = self.settings
        temperature = defaults.temperature if request.temperature is None else request.temperature
        top_k = defaults.top_k if request.top_k is None else max(request.top_k, 0)
        return Sampling(
            max_new_tokens=asked or min(defaults.max_tokens, room),
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else 1.0,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            top_k=top_k,
            seed=request.seed,
        )

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A place among the requests running or queued, held while the request is answered; 503 when full."""
        if self.in_flight >= self.capacity:
            raise APIError(
                f"The server is busy ({self.in_flight} requests running or queued): retry shortly.",
                status=503,
                kind="server_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def stop_sequences(request: ChatCompletionRequest) -> list[str]:
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > MAX_STOP_SEQUENCES or any(not stop for stop in stops):
        raise APIError(f"stop takes up to {MAX_STOP_SEQUENCES} non-empty strings.", param="stop")
    return stops


# --- the reply ----------------------------------------------------------------------------------------------


class Reply:
    """Generated token ids read back as the client sees them: decoded incrementally, cut at a stop string,
    split into reasoning and answer, with the token counts for `usage`."""

    def __init__(self, tokenizer, eos_ids: set[int], stops: list[str], max_tokens: int):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = stops
        self.max_tokens = max_tokens
        self.think_close_id = special_token_ids(tokenizer)["think_close"]
        self.ids: list[int] = []  # every generated token, the end-of-turn token included
        self.text = ""
        self.finish_reason: str | None = None
        self._text_ids: list[int] = []
        self._prefix = self._read = 0  # incremental decoding offsets into _text_ids
        self._sent = ("", "")

    def feed(self, tokens: list[int]) -> None:
        for token in tokens:
            if self.finish_reason:
                break
            self.ids.append(token)
            if token in self.eos_ids:
                self.finish_reason = "stop"
            else:
                self._text_ids.append(token)
        before = len(self.text)
        self.text += self._decode_new(final=self.finish_reason is not None)
        self._apply_stops(before)
        if not self.finish_reason and len(self.ids) >= self.max_tokens:
            self.finish_reason = "length"
            self.text += self._decode_new(final=True)
            self._apply_stops(before)

    def ended(self) -> None:
        """The engine had nothing more (a stop or the token limit it was given)."""
        if not self.finish_reason:
            self.finish_reason = "length"
            self.text += self._decode_new(final=True)

    def _decode_new(self, final: bool) -> str:
        """Text of the tokens since the last call; a character whose bytes are not all there yet waits."""
        ids = self._text_ids
        if self._read == len(ids):
            return ""
        decode = self.tokenizer.decode
        done = decode(ids[self._prefix : self._read], skip_special_tokens=True)
        full = decode(ids[self._prefix :], skip_special_tokens=True)
        if len(full) <= len(done) or (full.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(ids)
        return full[len(done) :]

    def _apply_stops(self, searched_up_to: int) -> None:
        if not self.stops:
            return
        start = max(0, searched_up_to - max(map(len, self.stops)) + 1)
        found = [index for stop in self.stops if (index := self.text.find(stop, start)) >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.finish_reason = "stop"

    def _visible(self) -> str:
        """The text a stream may show: the end of it that could still become a stop string is held back."""
        if self.finish_reason or not self.stops:
            return self.text
        for length in range(min(len(self.text), max(map(len, self.stops)) - 1), 0, -1):
            if any(stop.startswith(self.text[-length:]) for stop in self.stops):
                return self.text[:-length]
        return self.text

    def deltas(self) -> tuple[str, str]:
        """(reasoning, answer) text that is new since the last call."""
        reasoning, answer, _ = split_reasoning(self._visible())
        sent_reasoning, sent_answer = self._sent
        new_reasoning = reasoning[len(sent_reasoning) :] if reasoning.startswith(sent_reasoning) else ""
        new_answer = answer[len(sent_answer) :] if answer.startswith(sent_answer) else ""
        self._sent = (sent_reasoning + new_reasoning, sent_answer + new_answer)
        return new_reasoning, new_answer

    def message(self) -> dict:
        reasoning, answer, _ = split_reasoning(self.text)
        return {"role": "assistant", "content": answer, **reasoning_fields(reasoning or None)}

    def usage(self, prompt_tokens: int) -> dict:
        if self.think_close_id in self.ids:
            reasoning_tokens = self.ids.index(self.think_close_id) + 1
        else:
            reasoning_tokens = len(self._text_ids) if self.text.lstrip().startswith(THINK_OPEN) else 0
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(self.ids),
            "total_tokens": prompt_tokens + len(self.ids),
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        }


def reasoning_fields(reasoning: str | None) -> dict:
    """The reasoning under both names reasoning clients read: DeepSeek's and vLLM's."""
    return {"reasoning_content": reasoning, "reasoning": reasoning}


# --- the app ------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One admitted request: its prompt, how to decode it, and how to reply."""

    request: ChatCompletionRequest
    prompt_ids: list[int]
    sampling: Sampling
    stops: list[str]
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


async def run_job(model: ServedModel, job: Job) -> AsyncIterator[tuple[Reply, bool]]:
    """(reply, done) after each chunk of tokens."""
    reply = Reply(model.tokenizer, model.eos_ids, job.stops, job.sampling.max_new_tokens)
    async with aclosing(model.engine.stream(job.prompt_ids, job.sampling)) as tokens:
        async for new_tokens in tokens:
            reply.feed(new_tokens)
            if reply.finish_reason:
                break  # end of turn, stop string or length limit: closing the stream ends generation
            yield reply, False
    reply.ended()
    yield reply, True


def chunk(
    job: Job, model_name: str, delta: dict, finish_reason: str | None = None, usage: bool = False
) -> str:
    body: dict[str, Any] = {
        "id": job.id,
        "object": "chat.completion.chunk",
        "created": job.created,
        "model": model_name,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage:
        body["usage"] = None
    return sse(body)


def sse(body: dict | str) -> str:
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n"


async def stream_events(server: Server, job: Job) -> AsyncIterator[str]:
    with server.slot():
        async for event in _events(server.model, job):
            yield event


async def _events(model: ServedModel, job: Job) -> AsyncIterator[str]:
    name = model.name
    with_usage = bool(job.request.stream_options and job.request.stream_options.include_usage)
    yield chunk(job, name, {"role": "assistant", "content": ""}, usage=with_usage)
    reply = None
    try:
        async with aclosing(run_job(model, job)) as updates:
            async for reply, done in updates:
                reasoning, answer = reply.deltas()
                delta: dict[str, Any] = {}
                if reasoning:
                    delta.update(reasoning_fields(reasoning))
                if answer:
                    delta["content"] = answer
                if delta:
                    yield chunk(job, name, delta, usage=with_usage)
                if done:
                    yield chunk(job, name, {}, reply.finish_reason, usage=with_usage)
    except Exception:  # the status line has gone out: the error travels as an event, as OpenAI's does
        log.exception("streaming %s failed", job.id)
        yield sse(
            APIError("Generation failed on the server.", 500, "server_error", None, "internal_error").body()
        )
        yield sse("[DONE]")
        return
    if with_usage and reply is not None:
        usage_chunk = {
            "id": job.id,
            "object": "chat.completion.chunk",
            "created": job.created,
            "model": name,
            "choices": [],
            "usage": reply.usage(len(job.prompt_ids)),
        }
        yield sse(usage_chunk)
    yield sse("[DONE]")


async def complete(server: Server, job: Job) -> dict:
    with server.slot():
        async with aclosing(run_job(server.model, job)) as updates:
            reply = [update async for update, _ in updates][-1]
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": server.model.name,
        "choices": [
            {"index": 0, "message": reply.message(), "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": reply.usage(len(job.prompt_ids)),
    }


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def build_app(server: Server) -> FastAPI:
    app = FastAPI(title="medsft", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    def error_response(error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return error_response(APIError(str(error.detail), error.status_code, kind))

    @app.exception_handler(Exception)
    async def crashed(_: Request, error: Exception) -> JSONResponse:
        log.error("request failed", exc_info=error)
        return error_response(APIError("Internal server error.", 500, "server_error", code="internal_error"))

    def authorised(request: Request) -> None:
        key = server.settings.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(
                "Missing or wrong API key: send the header `Authorization: Bearer <key>` "
                "with the key the server was started with.",
                status=401,
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/health")
    async def health() -> dict:
        engine = server.model.engine
        return {
            "status": "ok",
            "model": server.model.name,
            "backend": server.model.backend,
            "running": engine.running,
            "waiting": engine.waiting,
            "in_flight": server.in_flight,
            "largest_batch": engine.largest_batch,
            "generated_tokens": engine.generated_tokens,
        }

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict:
        model = server.model
        card = {
            "id": model.name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "medsft",
            "root": str(model.model_dir) if model.model_dir else model.name,
            "max_model_len": model.max_context,
            "backend": model.backend,
            "run_card": model.run_card,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(request: Request) -> Response:
        body = parse_request(await request.body())
        if body.model is not None and body.model != server.model.name:
            raise APIError(
                f"The model `{body.model}` does not exist: this server serves `{server.model.name}`.",
                status=404,
                param="model",
                code="model_not_found",
            )
        messages = server.conversation(body)
        enable_thinking = server.enable_thinking(body)
        stops = stop_sequences(body)
        prompt_ids = await run_in_threadpool(server.prompt_ids, messages, enable_thinking)
        job = Job(body, prompt_ids, server.sampling(body, len(prompt_ids)), stops)
        if body.stream:
            events = stream_events(server, job)
            # started here: a full server answers 503 before any byte, and a started generator releases its
            # slot however it ends (even when the client is gone before the first byte)
            first = await anext(events)
            return StreamingResponse(
                _prepend(first, events),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        answer = asyncio.ensure_future(complete(server, job))
        watcher = asyncio.ensure_future(until_disconnected(request))
        try:
            await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not answer.done():  # the client went away: its generation stops
                answer.cancel()
        if answer.cancelled():
            return Response(status_code=499)
        return JSONResponse(answer.result())

    return app


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


# --- loading and the command --------------------------------------------------------------------------------


def read_run_card(model_dir: Path | None) -> dict | None:
    """The training run's card (output/<run>/run_card.json next to final/), when there is one."""
    if model_dir is None:
        return None
    for path in (model_dir / "run_card.json", model_dir.parent / "run_card.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("could not read %s", path)
    return None


def load_model(
    model: str | Path,
    name: str,
    backend: str = "auto",
    device: str | None = None,
    dtype: str | None = None,
    max_batch_size: int = 16,
    max_model_len: int | None = None,
) -> ServedModel:
    """Load a model and its decoding engine: vLLM's on a GPU with vLLM ("auto"), else the request batcher."""
    from medsft.generate import load_generator, pick_device, pick_dtype, vllm_usable
    from medsft.model import resolve_model_dir

    chosen_device = pick_device(device)
    use_vllm = backend == "vllm" or (backend == "auto" and chosen_device.startswith("cuda") and vllm_usable())
    if use_vllm:
        from transformers import AutoTokenizer

        if not (chosen_device.startswith("cuda") and vllm_usable()):
            raise MedsftError("--backend vllm needs vLLM installed and a CUDA GPU; use --backend hf.")
        model_dir = resolve_model_dir(model)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        eos_ids = end_of_turn_ids(tokenizer, model_dir)
        dtype_name = str(pick_dtype(chosen_device, dtype)).removeprefix("torch.")
        engine = VLLMEngine(model_dir, dtype_name, eos_ids, max_batch_size, max_model_len)
        return ServedModel(
            name,
            tokenizer,
            eos_ids,
            engine.max_context,
            engine,
            "vllm",
            chosen_device,
            model_dir,
            read_run_card(model_dir),
        )
    generator = load_generator(model, device=device, dtype=dtype, backend="hf")
    tokenizer = generator.tokenizer
    engine = ContinuousBatcher(
        generator.model, set(generator.eos_ids), tokenizer.pad_token_id, max_batch_size
    )
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


def end_of_turn_ids(tokenizer, model_dir: Path) -> set[int]:
    """The token ids that end a reply: the chat format's end of turn, the tokenizer's and the model's eos."""
    from transformers import GenerationConfig

    ids = {special_token_ids(tokenizer)["end_of_turn"]}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    try:
        configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:
        configured = None
    ids.update(configured if isinstance(configured, list) else [] if configured is None else [configured])
    return ids


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerSettings()
    parser = argparse.ArgumentParser(
        prog="medsft serve",
        description="Serve an OpenAI-compatible chat-completions API (reasoning apart from the answer).",
    )
    parser.add_argument(
        "--model", help="model folder, ModelScope id or hf:<id> (default: the newest output/*/final)"
    )
    parser.add_argument(
        "--served-model-name", help="the name clients send as `model` (default: --model as given)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (%(default)s; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000, help="(%(default)s)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require `Authorization: Bearer KEY` (or ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--backend", choices=["auto", "hf", "vllm"], default="auto", help="auto: vLLM on a GPU when installed"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=16, help="requests decoded together (%(default)s)"
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="requests waiting beyond the batch (%(default)s)",
    )
    parser.add_argument(
        "--max-model-len", type=int, default=None, help="context limit (default: the model's)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=defaults.max_tokens, help="reply length when a request does not say"
    )
    parser.add_argument(
        "--temperature", type=float, default=defaults.temperature, help="default (%(default)s)"
    )
    parser.add_argument("--top-p", type=float, default=defaults.top_p, help="default (%(default)s)")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="default (%(default)s; 0 = off)")
    parser.add_argument("--no-think", action="store_true", help="default enable_thinking=false")
    parser.add_argument(
        "--system-prompt", default=defaults.system_prompt, help='used when a request has none ("" for none)'
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="bfloat16, float16, float32 (default: bf16 on GPU)")
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    problems = []
    if args.max_tokens < 1:
        problems.append("--max-tokens must be at least 1")
    if args.max_batch_size < 1 or args.max_queue < 0:
        problems.append("--max-batch-size must be at least 1 and --max-queue at least 0")
    if not 0 < args.top_p <= 1 or args.top_k < 0 or args.temperature < 0:
        problems.append("--top-p must be in (0, 1], --top-k and --temperature at least 0")
    if problems:
        raise MedsftError("; ".join(problems) + ".")
    return ServerSettings(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        enable_thinking=not args.no_think,
        system_prompt=args.system_prompt,
        api_key=args.api_key or None,
        max_queue=args.max_queue,
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from medsft.generate import newest_final_model

    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    if not is_loopback(args.host) and settings.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the model. "
            "Set --api-key or %s, or put an authenticating reverse proxy in front.",
            args.host,
            API_KEY_ENV,
        )
    model = args.model
    if not model:
        model = newest_final_model()
        log.info("--model not given: using the newest trained model, %s", model)
    served = load_model(
        model,
        args.served_model_name or str(model),
        args.backend,
        args.device,
        args.dtype,
        args.max_batch_size,
        args.max_model_len,
    )
    server = Server(served, settings)
    log.info(
        "serving %s (%s on %s, context %d) at http://%s:%d/v1 — Ctrl+C stops it",
        served.name,
        served.backend,
        served.device,
        served.max_context,
        args.host,
        args.port,
    )
    try:
        uvicorn.run(
            build_app(server), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5
        )
    finally:
        if isinstance(served.engine, VLLMEngine):
            served.engine.shutdown()
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("serve", main, sys.argv[1:]))
