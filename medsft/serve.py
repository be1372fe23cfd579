"""`medsft serve`: an OpenAI-compatible chat-completions API, the reasoning returned apart from the answer.

`POST /v1/chat/completions` (streamed as server-sent events or not), `GET /v1/models`, `GET /health`. This
module is the app (admission, request defaults, routes) and the command; the wire format is
medsft.openai_protocol, reading replies back medsft.reply, decoding medsft.engine (concurrent requests are
decoded together by the engine's backend).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from transformers import HfArgumentParser

from medsft import openai_protocol as protocol
from medsft.arguments import WholeNumber, check_range, command_parser, option, parse
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, ControlTokenInText, Conversation, prompt_token_ids
from medsft.engine import DEFAULT_MAX_BATCH_SIZE, Engine, GenerationSettings, load_engine
from medsft.errors import MedsftError
from medsft.openai_protocol import APIError, ChatCompletionRequest
from medsft.options import (
    SamplingArguments,
    listen_address_problem,
    resolve_model_argument,
    system_prompt_for,
)
from medsft.provenance import read_run_card
from medsft.reply import Reply

log = logging.getLogger(__name__)

API_KEY_ENV = "MEDSFT_API_KEY"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request its client abandoned
LOOPBACK_NAMES = {"localhost"}


@dataclass
class ServedModel:
    """The model the server answers with: the name clients send, its engine, and its training run card."""

    name: str
    engine: Engine
    run_card: dict | None = None

    def close(self) -> None:
        self.engine.close()


def load_served_model(
    model: str | Path,
    name: str,
    backend: str = "auto",
    device: str | None = None,
    dtype: str | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_model_len: int | None = None,
) -> ServedModel:
    engine = load_engine(model, device, dtype, backend, max_batch_size, max_model_len)  # type: ignore[arg-type]
    return ServedModel(name, engine, read_run_card(engine.model_dir) if engine.model_dir else None)


@dataclass
class ServerSettings:
    """Request defaults and limits of one server."""

    # what a request does not say: Qwen3's thinking-mode sampling, up to 1024 new tokens
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # used when a request has no system message; "" for none
    api_key: str | None = None
    max_queue: int = 64  # requests waiting beyond the engine's batch; more get 503


@dataclass
class Server:
    model: ServedModel
    settings: ServerSettings = field(default_factory=ServerSettings)
    in_flight: int = 0  # touched only from the event loop
    stopping: bool = False  # set when the server is told to stop: requests under way end at their next tokens

    @property
    def capacity(self) -> int:
        return self.model.engine.max_batch_size + self.settings.max_queue

    def conversation(self, request: ChatCompletionRequest) -> Conversation:
        return protocol.conversation(request, self.settings.system_prompt)

    def prompt_ids(
        self, request: ChatCompletionRequest, messages: Conversation, enable_thinking: bool
    ) -> list[int]:
        try:
            return prompt_token_ids(self.model.engine.tokenizer, messages, enable_thinking)
        except ControlTokenInText as error:  # named by its place in the request (a system turn may be added)
            index = error.index - (len(messages) - len(request.messages))
            raise APIError(
                f"messages[{index}].content holds {error.token!r}, a control token of the chat format: "
                "message text cannot contain it.",
                param=f"messages[{index}].content",
            ) from None

    def enable_thinking(self, request: ChatCompletionRequest) -> bool:
        return protocol.enable_thinking(request, self.settings.generation.enable_thinking)

    def generation(
        self, request: ChatCompletionRequest, prompt_tokens: int, enable_thinking: bool
    ) -> GenerationSettings:
        """How to decode the request: its own values, the server's defaults for the rest, the reply's length
        within the model's context."""
        engine = self.model.engine
        if engine.length_problem(prompt_tokens, 1):  # not one new token fits
            raise APIError(
                f"The prompt has {prompt_tokens} tokens and the model's context is {engine.max_context}: "
                "shorten the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        room = engine.max_context - prompt_tokens
        asked = request.max_completion_tokens or request.max_tokens
        if asked is not None and engine.length_problem(prompt_tokens, asked):
            raise APIError(
                f"The prompt ({prompt_tokens} tokens) plus max_tokens ({asked}) does not fit the model's "
                f"context ({engine.max_context}): ask for at most {room} tokens or shorten the messages.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        defaults = self.settings.generation
        temperature = defaults.temperature if request.temperature is None else request.temperature
        do_sample = defaults.do_sample if request.temperature is None else temperature > 0
        return GenerationSettings(
            max_new_tokens=asked or min(defaults.max_new_tokens, room),
            do_sample=do_sample,
            temperature=temperature if temperature > 0 else 1.0,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            top_k=defaults.top_k if request.top_k is None else max(request.top_k, 0),
            enable_thinking=enable_thinking,
            seed=defaults.seed if request.seed is None else request.seed,
        )

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A place among the requests running or queued, held while the request is answered; 503 when full."""
        if self.stopping:
            raise protocol.shutting_down()
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


# --- answering ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One admitted request: its prompt, how to decode it, and how to reply."""

    request: ChatCompletionRequest
    prompt_ids: list[int]
    generation: GenerationSettings
    stops: list[str]
    completion: protocol.Completion

    def usage(self, reply: Reply) -> dict:
        return protocol.usage(len(self.prompt_ids), len(reply.ids), reply.reasoning_tokens)


async def run_job(model: ServedModel, job: Job) -> AsyncIterator[tuple[Reply, bool]]:
    """(reply, done) after each chunk of tokens."""
    engine = model.engine
    reply = Reply(engine.tokenizer, engine.eos_ids, job.stops, job.generation.max_new_tokens)
    async with aclosing(engine.stream_tokens(job.prompt_ids, job.generation)) as tokens:
        async for new_tokens in tokens:
            reply.feed(new_tokens)
            if reply.finish_reason:
                break  # end of turn, stop string or length limit: closing the stream ends generation
            yield reply, False
    reply.ended()
    yield reply, True


async def stream_events(server: Server, job: Job) -> AsyncIterator[str]:
    with server.slot():
        async for event in _events(server, job):
            yield event


async def _events(server: Server, job: Job) -> AsyncIterator[str]:
    completion = job.completion
    with_usage = job.request.include_usage
    yield completion.chunk({"role": "assistant", "content": ""}, with_usage=with_usage)
    reply = None
    try:
        async with aclosing(run_job(server.model, job)) as updates:
            async for reply, done in updates:
                if server.stopping:  # the shutdown waits for no stream: each ends with a 503 event
                    yield protocol.sse(protocol.shutting_down().body())
                    yield protocol.STREAM_END
                    return
                delta = protocol.delta(*reply.deltas())
                if delta:
                    yield completion.chunk(delta, with_usage=with_usage)
                if done:
                    yield completion.chunk({}, reply.finish_reason, with_usage=with_usage)
    except Exception:  # the status line has gone out: the error travels as an event, as OpenAI's does
        log.exception("streaming %s failed", completion.id)
        yield protocol.sse(protocol.internal_error("Generation failed on the server.").body())
        yield protocol.STREAM_END
        return
    if with_usage and reply is not None:
        yield completion.usage_chunk(job.usage(reply))
    yield protocol.STREAM_END


async def complete(server: Server, job: Job) -> dict:
    with server.slot():
        async with aclosing(run_job(server.model, job)) as updates:
            async for update, _ in updates:
                if server.stopping:
                    raise protocol.shutting_down()
                reply = update
    message = protocol.assistant_message(*reply.reasoning_and_answer())
    return job.completion.whole(message, reply.finish_reason, job.usage(reply))


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


# --- the app ------------------------------------------------------------------------------------------------


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
        return error_response(protocol.validation_error(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return error_response(APIError(str(error.detail), error.status_code, kind))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info("%s %s: %s left before its request arrived whole", request.method, request.url.path, client)
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # no one reads it: the connection is gone

    @app.exception_handler(Exception)
    async def crashed(_: Request, error: Exception) -> JSONResponse:
        log.error("request failed", exc_info=error)
        return error_response(protocol.internal_error("Internal server error."))

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
            "backend": engine.backend,
            "running": engine.running,
            "waiting": engine.waiting,
            "in_flight": server.in_flight,
            "largest_batch": engine.largest_batch,
            "generated_tokens": engine.generated_tokens,
        }

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict:
        model, engine = server.model, server.model.engine
        root = str(engine.model_dir) if engine.model_dir else model.name
        card = protocol.model_card(model.name, root, engine.max_context, engine.backend, model.run_card)
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(request: Request) -> Response:
        body = protocol.parse_request(await request.body())
        if body.model is not None and body.model != server.model.name:
            raise APIError(
                f"The model `{body.model}` does not exist: this server serves `{server.model.name}`.",
                status=404,
                param="model",
                code="model_not_found",
            )
        messages = server.conversation(body)
        enable_thinking = server.enable_thinking(body)
        stops = protocol.stop_sequences(body)
        prompt_ids = await run_in_threadpool(server.prompt_ids, body, messages, enable_thinking)
        generation = server.generation(body, len(prompt_ids), enable_thinking)
        job = Job(body, prompt_ids, generation, stops, protocol.Completion(server.model.name))
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
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        return JSONResponse(answer.result())

    return app


# --- the command --------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServeArguments:
    """Where `medsft serve` listens, who may use it, and how many requests it takes at once."""

    served_model_name: str | None = option("the name clients send as `model` (default: --model as given)")
    host: str = option("bind address (0.0.0.0 exposes it)", "127.0.0.1")
    port: WholeNumber = option("port", 8000)
    api_key: str | None = option(f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV})")
    max_batch_size: WholeNumber = option("requests decoded together", DEFAULT_MAX_BATCH_SIZE)
    max_queue: WholeNumber = option("requests waiting beyond the batch", ServerSettings.max_queue)
    max_model_len: WholeNumber | None = option("context limit (default: the model's)")

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV)
        check_range(self, "port", 1, 65535)
        check_range(self, "max_batch_size", 1)
        check_range(self, "max_queue", 0)
        check_range(self, "max_model_len", 1)


def build_parser() -> HfArgumentParser:
    return command_parser(
        "medsft serve",
        "Serve an OpenAI-compatible chat-completions API (reasoning apart from the answer).",
        ServeArguments,
        SamplingArguments,
    )


def server_settings(options: ServeArguments, generation: SamplingArguments) -> ServerSettings:
    system_prompt = DEFAULT_SYSTEM_PROMPT if generation.system_prompt is None else generation.system_prompt
    return ServerSettings(generation.settings(), system_prompt, options.api_key or None, options.max_queue)


def main(argv: list[str] | None = None) -> int:
    options, generation = parse(build_parser(), argv)
    settings = server_settings(options, generation)
    if problem := listen_address_problem(options.host, options.port):  # before minutes of model loading
        raise MedsftError(f'{problem} (make serve ARGS="--port N").')
    if not is_loopback(options.host) and settings.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the model. "
            "Set --api-key or %s, or put an authenticating reverse proxy in front.",
            options.host,
            API_KEY_ENV,
        )
    model = resolve_model_argument(generation.model)
    served = load_served_model(
        model,
        options.served_model_name or str(model),
        generation.backend,
        generation.device,
        generation.dtype,
        options.max_batch_size,
        options.max_model_len,
    )
    if generation.system_prompt is None:
        settings = replace(settings, system_prompt=system_prompt_for(served.engine.model_dir, None))
    log.info(
        "serving %s (%s on %s, context %d) at http://%s:%d/v1 — Ctrl+C stops it",
        served.name,
        served.engine.backend,
        served.engine.device,
        served.engine.max_context,
        options.host,
        options.port,
    )
    server = Server(served, settings)
    config = uvicorn.Config(
        build_app(server), host=options.host, port=options.port, log_level="info", timeout_graceful_shutdown=5
    )
    try:
        StoppingServer(config, server).run()
    finally:
        served.close()
    return 0


class StoppingServer(uvicorn.Server):
    """uvicorn's server, which on Ctrl-C (or SIGTERM) first ends the requests under way (a streamed reply
    with a 503 error event, a plain one with a 503), so that its shutdown waits for none and cancels none."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.server = server

    def handle_exit(self, sig: int, frame) -> None:
        if not self.server.stopping:
            self.server.stopping = True
            log.info("stopping: %d requests under way end now", self.server.in_flight)
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("serve", main, sys.argv[1:]))
