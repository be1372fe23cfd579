"""Command-line options of the commands that generate (`medsft infer`, `medsft demo`, `medsft serve`),
declared once: the model, the backend and the sampling settings, read back into GenerationSettings by one
function. Numbers out of range are argument errors, before any model loads."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import socket
from collections.abc import Callable
from pathlib import Path

from medsft.chat_format import DEFAULT_SYSTEM_PROMPT
from medsft.engine import BACKENDS, GenerationSettings, newest_final_model
from medsft.trained_prompt import trained_system_prompt

log = logging.getLogger(__name__)


def number_in(kind: type, low: float, high: float | None = None, above_low: bool = False) -> Callable:
    """An argparse type: a finite `kind` (int or float) from `low` (excluded when `above_low`) to `high`."""
    bounds = f"{'above' if above_low else 'at least'} {low}" + (
        f" and at most {high}" if high is not None else ""
    )

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, not {text!r}"
            ) from None
        below = value <= low if above_low else value < low
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return parse


def add_generation_arguments(parser: argparse.ArgumentParser, backend_help: str) -> None:
    """The model, where it runs and how it samples. An API request may ask for other sampling values: these
    are the defaults of `medsft serve`."""
    defaults = GenerationSettings()
    parser.add_argument(
        "--model", help="model folder, ModelScope id or hf:<id> (default: the newest output/*/final)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=backend_help)
    parser.add_argument("--no-think", action="store_true", help="answer directly (enable_thinking=False)")
    parser.add_argument(
        "--max-new-tokens",
        "--max-tokens",
        type=number_in(int, 1),
        default=defaults.max_new_tokens,
        help="reply length, reasoning included (%(default)s)",
    )
    parser.add_argument(
        "--temperature", type=number_in(float, 0), default=defaults.temperature, help="(%(default)s)"
    )
    parser.add_argument(
        "--top-p", type=number_in(float, 0, 1, above_low=True), default=defaults.top_p, help="(%(default)s)"
    )
    parser.add_argument(
        "--top-k", type=number_in(int, 0), default=defaults.top_k, help="(%(default)s; 0: off)"
    )
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    parser.add_argument(
        "--system-prompt",
        default=None,
        help="system turn when a conversation has none (default: the one the model was trained with, as "
        'recorded in its folder, else medsft\'s default; "" for none)',
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="bfloat16, float16, float32 (default: bf16 on GPU)")


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        enable_thinking=not args.no_think,
        seed=args.seed,
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
