"""The options of the commands that generate, declared once: `GenerationArguments` (the model, where it runs,
the reply length, greedy decoding, the seed, the system prompt: infer, demo, serve and eval) and
`SamplingArguments` (those, the thinking switch and the sampling values: infer, demo, serve), as dataclasses
parsed by HfArgumentParser (medsft.arguments); and what these commands resolve from them before a model
loads: the model to use, its system prompt, a free address to listen on. Numbers out of range are argument
errors, before any model loads."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from medsft.arguments import Number, WholeNumber, check_range, option
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT
from medsft.engine import Backend, GenerationSettings, newest_final_model
from medsft.trained_prompt import trained_system_prompt

log = logging.getLogger(__name__)


@dataclass
class GenerationArguments:
    """The model and how it answers: the options of each command that generates (infer, demo, serve, eval)."""

    model: str | None = option("model folder, ModelScope id or hf:<id> (default: the newest output/*/final)")
    backend: Backend = option(
        "generation backend; auto: vLLM when it is installed and the device is a GPU, else hf", "auto"
    )
    max_new_tokens: WholeNumber = option(
        "reply length, reasoning included", GenerationSettings.max_new_tokens, aliases=["--max-tokens"]
    )
    greedy: bool = option("greedy decoding instead of sampling", False)
    seed: int | None = option("sampling seed (default: random)")
    system_prompt: str | None = option(
        "system turn when a conversation has none (default: the one the model was trained with, as recorded "
        'in its folder, else medsft\'s default; "" for none)'
    )
    device: str | None = option("cuda, cuda:1, cpu … (default: cuda when available)")
    dtype: str | None = option("bfloat16, float16, float32 (default: bf16 on GPU, fp32 on CPU)")

    def __post_init__(self) -> None:
        check_range(self, "max_new_tokens", 1)


@dataclass
class SamplingArguments(GenerationArguments):
    """The generation options, the thinking switch and the sampling values: infer, demo and serve (an API
    request may ask for other sampling values; these are the defaults of `medsft serve`)."""

    _argument_group_name = "generation"

    no_think: bool = option("answer directly (enable_thinking=False)", False)
    temperature: Number = option("sampling temperature", GenerationSettings.temperature)
    top_p: Number = option("nucleus sampling", GenerationSettings.top_p)
    top_k: WholeNumber = option("top-k sampling; 0: off", GenerationSettings.top_k)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "temperature", 0)
        check_range(self, "top_p", 0, 1, above_low=True)
        check_range(self, "top_k", 0)

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            do_sample=not self.greedy,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            enable_thinking=not self.no_think,
            seed=self.seed,
        )


def listen_address_problem(host: str, port: int) -> str | None:
    """Why a server cannot listen on host:port (a busy port, an address of no interface here), or None."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        return f"--host {host} is not an address of this machine (e.g. 127.0.0.1, or 0.0.0.0 for all)"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no bar
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use by another program: choose another with --port N"
            return f"cannot listen on {host}:{port} ({error.strerror}): check --host and --port"
    return None


def system_prompt_for(model_dir: str | Path | None, given: str | None) -> str:
    """--system-prompt as given, else the prompt the model was trained with (final/medsft.json), else
    medsft's default: a model is asked the way it was trained."""
    if given is not None:
        return given
    trained = trained_system_prompt(model_dir) if model_dir is not None and Path(model_dir).is_dir() else None
    if trained is None:
        return DEFAULT_SYSTEM_PROMPT
    log.info("system prompt: the one the model was trained with (%s)", repr(trained) if trained else "none")
    return trained


def resolve_model_argument(model: str | None) -> str | Path:
    """--model as given, else the newest trained model (logged, so the user knows which one answers)."""
    if model:
        return model
    path = newest_final_model()
    log.info("--model not given: using the newest trained model, %s", path)
    return path
