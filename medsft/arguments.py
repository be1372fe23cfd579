"""Command-line options as dataclasses, parsed by transformers' HfArgumentParser as TRL's scripts parse
theirs: each field is a flag (`--max-new-tokens` and `--max_new_tokens` alike), its help and aliases in the
field's metadata. Every command declares its options so, with the helpers here; the generation options that
several commands share are in medsft.options.

A value out of range is an `OptionError` from a dataclass's `__post_init__`, before anything runs: `parse`
prints it as argparse prints a bad value (`medsft infer: error: argument --top-p: …`, exit 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import field, fields
from typing import Any

from transformers import HfArgumentParser

from medsft.errors import MedsftError


class OptionError(MedsftError):
    """An option the command cannot run with: one line, exit 2. `usage_message` is the line as argparse words
    a bad value (`argument --top-p: must be …`), for commands that print it under their usage."""

    def __init__(self, message: str, usage_message: str | None = None):
        super().__init__(message)
        self.usage_message = usage_message or message


def option(
    help_text: str,
    default: Any = None,
    default_factory: Callable[[], Any] | None = None,
    **argparse_kwargs: Any,
) -> Any:
    """A dataclass field that is a command-line option: its help, its default (or a function that makes it
    when the parser is built), and what else argparse takes (aliases, metavar …)."""
    metadata = {"help": help_text, **argparse_kwargs}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """How a field is written on the command line (`--max-new-tokens`), as errors name it."""
    return f"--{name.replace('_', '-')}"


def flag_spellings(options: object, name: str) -> list[str]:
    """Every way a field is written on the command line: its flag, then its aliases."""
    (spec,) = [spec for spec in fields(options) if spec.name == name]
    aliases = spec.metadata.get("aliases", [])
    return [flag(name), *([aliases] if isinstance(aliases, str) else aliases)]


def check_range(
    options: object, name: str, low: float, high: float | None = None, above_low: bool = False
) -> None:
    """An OptionError unless the field `name` is unset or a finite number from `low` (excluded when
    `above_low`) to `high`."""
    value = getattr(options, name)
    if value is None:
        return
    below = value <= low if above_low else value < low
    if math.isfinite(value) and not below and (high is None or value <= high):
        return
    bounds = f"{'above' if above_low else 'at least'} {low}" + (
        f" and at most {high}" if high is not None else ""
    )
    spellings = flag_spellings(options, name)
    problem = f"must be {bounds}, not {value}"
    raise OptionError(f"{spellings[0]} {problem}.", f"argument {'/'.join(spellings)}: {problem}")


class WholeNumber(int):
    """The type of a whole-number option. HfArgumentParser hands a field's type to argparse, which calls it on
    the text: this one returns a plain int, and says in words what was expected where int() would not."""

    def __new__(cls, text: str | int) -> int:  # type: ignore[misc]
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


class Number(float):
    """The type of a numeric option: a plain float, or argparse's error in words."""

    def __new__(cls, text: str | float) -> float:  # type: ignore[misc]
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, but for an unset one (None, False): its help says so."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def command_parser(prog: str, description: str, *dataclass_types: type) -> HfArgumentParser:
    return HfArgumentParser(
        dataclass_types, prog=prog, description=description, formatter_class=HelpFormatter
    )


def parse(parser: HfArgumentParser, argv: Sequence[str] | None) -> tuple:
    """One instance of each of the parser's dataclasses. A bad flag or value, or an OptionError of a
    dataclass's checks, is argparse's usage error: exit 2 before anything runs."""
    try:
        *options, rest = parser.parse_args_into_dataclasses(
            list(argv) if argv is not None else None, return_remaining_strings=True, look_for_args_file=False
        )
    except OptionError as error:
        parser.error(error.usage_message)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(options)
