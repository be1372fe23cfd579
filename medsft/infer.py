"""`medsft infer`: a chat in the terminal, one streamed answer (reasoning, then answer), or a JSONL file."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TextIO

from transformers import HfArgumentParser

from medsft.arguments import OptionError, WholeNumber, check_range, command_parser, option, parse
from medsft.chat_format import SOFT_SWITCHES, THINK_SWITCH, Conversation, with_system_prompt
from medsft.engine import Engine, Generation, GenerationSettings, load_engine
from medsft.errors import MedsftError
from medsft.jsonl import dumps_line
from medsft.options import SamplingArguments, resolve_model_argument, system_prompt_for

REASONING_HEADER = "──────── 思考 / Reasoning ────────"
ANSWER_HEADER = "──────── 回答 / Answer ────────"
NOT_MEDICAL_ADVICE = (
    "仅供参考，不构成医疗建议；如有不适请就医，紧急情况请拨打急救电话。\n"
    "Not medical advice: answers can be wrong and do not replace a doctor; in an emergency, call for help."
)
CHAT_HELP = (
    "/reset 清空对话 new chat · /think on|off 深度思考 reasoning · Ctrl-C 停止 stop · Ctrl-D 退出 quit"
)
CHAT_PROMPT = "\n你 / You › "
CHUNK_BATCHES = 8  # batches sorted by length together; answers are written after each chunk

log = logging.getLogger(__name__)


class InferenceError(MedsftError):
    """A question or input file that cannot be answered."""


class TerminalStyle(NamedTuple):
    """ANSI codes for the reasoning and the notes: empty when the output is no terminal or NO_COLOR is set."""

    dim: str = ""
    reset: str = ""

    @classmethod
    def for_stream(cls, out: TextIO) -> TerminalStyle:
        is_terminal = getattr(out, "isatty", lambda: False)()
        return cls("\x1b[2m", "\x1b[0m") if is_terminal and not os.environ.get("NO_COLOR") else cls()


class StreamedReply(NamedTuple):
    """What one streamed answer left: the answer text and how it ended."""

    answer: str
    stopped: bool  # by the user (Ctrl-C)
    generation: Generation | None  # None when the stream ended without its final update


class ReplyPrinter:
    """Prints a streamed reply: the reasoning (dimmed) under its header, only when there is some, then the
    answer, under its own header when reasoning came first; notes when the reply was cut or stopped."""

    def __init__(self, out: TextIO, style: TerminalStyle | None = None):
        self.out = out
        self.style = style or TerminalStyle.for_stream(out)
        self.reasoning = self.answer = ""

    def show(self, reasoning: str, answer: str) -> None:
        dim, reset = self.style
        if self.answer and not self.reasoning and reasoning.startswith(self.answer):
            # untagged text, shown as the answer, was reasoning after all (a `</think>` came after it): it
            # stays as printed, and what follows continues it
            self.reasoning, self.answer = self.answer, ""
        if reasoning.startswith(self.reasoning) and len(reasoning) > len(self.reasoning):
            header = "" if self.reasoning else REASONING_HEADER + "\n"
            self.out.write(f"{dim}{header}{reasoning[len(self.reasoning) :]}{reset}")
            self.reasoning = reasoning
        if answer and not self.answer and self.reasoning:
            self.out.write(f"\n\n{ANSWER_HEADER}\n")
        if answer.startswith(self.answer) and len(answer) > len(self.answer):
            self.out.write(answer[len(self.answer) :])
            self.answer = answer
        self.out.flush()

    def finish(self, reply: StreamedReply, settings: GenerationSettings) -> None:
        self.out.write("\n")
        note = ending_note(reply, settings)
        if note:
            self.note(note)
        self.out.flush()

    def note(self, text: str) -> None:
        dim, reset = self.style
        print(f"{dim}({text}){reset}", file=self.out, flush=True)


def ending_note(reply: StreamedReply, settings: GenerationSettings) -> str | None:
    """Why an answer is missing or incomplete, in one line; None for a finished answer."""
    limit = f"--max-new-tokens {settings.max_new_tokens}"
    if reply.stopped:
        return "已停止 / stopped" + ("" if reply.answer else ": no answer")
    if reply.generation is None or not reply.generation.truncated:
        return None if reply.answer else "no answer was produced"
    if reply.answer:
        return f"cut at {limit}: the answer is incomplete; raise {limit.split()[0]} for the rest"
    return f"the reasoning used all of {limit} and no answer came; raise --max-new-tokens"


@contextmanager
def interrupt_sets(event: threading.Event) -> Iterator[None]:
    """While streaming, Ctrl-C (SIGINT) sets `event` so the model stops and the partial answer stays."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stream_reply(
    engine: Engine, messages: Conversation, settings: GenerationSettings, printer: ReplyPrinter
) -> StreamedReply:
    """Stream one answer to the printer; Ctrl-C stops it (the partial answer is kept)."""
    stop = threading.Event()
    generation = None
    with interrupt_sets(stop):
        try:
            for update in engine.stream(messages, settings, stop_event=stop):
                printer.show(update.reasoning, update.answer)
                generation = update.generation or generation
        except KeyboardInterrupt:  # off the main thread no handler is installed: the stream closes instead
            stop.set()
    reply = StreamedReply(printer.answer, stop.is_set(), generation)
    printer.finish(reply, settings)
    return reply


def stream_answer(engine: Engine, messages: Conversation, settings: GenerationSettings, out: TextIO) -> str:
    """Print reasoning then answer as they arrive (see ReplyPrinter); returns the answer."""
    return stream_reply(engine, messages, settings, ReplyPrinter(out)).answer


def prompt_too_long(engine: Engine, messages: Conversation, settings: GenerationSettings) -> str | None:
    length = engine.count_prompt_tokens(messages, settings.enable_thinking)
    return engine.length_problem(length, settings.max_new_tokens)


@contextmanager
def terminal_of_our_own() -> Iterator[None]:
    """The terminal's Ctrl-C for this process alone while the chat runs. A parent in the same process group,
    such as `make infer`, would take each Ctrl-C for its own interrupt: it waits for the chat, then ends
    with status 130 however the chat ended. So the chat runs in a process group of its own, in the
    terminal's foreground, and gives the terminal back as it ends. (A shell already gives each command its
    own group: then nothing changes.)"""
    try:
        terminal = sys.stdin.fileno()
        previous = os.tcgetpgrp(terminal)
    except (OSError, ValueError, AttributeError):  # no terminal
        yield
        return
    if os.getpgrp() == os.getpid() or previous != os.getpgrp():
        yield
        return
    background_write = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from a background group
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(terminal, os.getpgrp())
        yield
    finally:
        with suppress(OSError):
            os.tcsetpgrp(terminal, previous)
        signal.signal(signal.SIGTTOU, background_write)


def starts_with_soft_switch(line: str) -> bool:
    """A chat line that begins with one of Qwen3's soft switches and goes on with a question
    (`/no_think 头痛怎么办？`): a message for the model, not a command (`/think on|off` stays the command)."""
    switch, _, rest = line.partition(" ")
    rest = rest.strip()
    return switch in SOFT_SWITCHES and bool(rest) and not (switch == THINK_SWITCH and rest in {"on", "off"})


def chat(
    engine: Engine,
    settings: GenerationSettings,
    system_prompt: str,
    out: TextIO,
    read_line: Callable[[str], str] = input,
    echo: bool | None = None,
) -> None:
    """A multi-turn chat in the terminal until Ctrl-D (or /quit). Earlier answers go back to the model
    without their reasoning, as Qwen3's chat template renders them. Questions piped in (stdin no terminal,
    unless `echo` says otherwise) are echoed after the prompt, as a terminal shows what is typed."""
    if echo is None:
        echo = not sys.stdin.isatty()
    with suppress(ImportError):  # line editing and history for input(), where the platform has readline
        import readline  # noqa: F401
    printer = ReplyPrinter(out)
    print(NOT_MEDICAL_ADVICE, file=out)
    print(CHAT_HELP, file=out, flush=True)
    history: Conversation = []
    while True:
        try:
            line = read_line(CHAT_PROMPT).strip()
            if echo:
                print(line, file=out, flush=True)
        except EOFError:
            print(file=out, flush=True)
            return
        except KeyboardInterrupt:
            print(file=out)
            printer.note("Ctrl-D 退出 / quits")
            continue
        if not line:
            continue
        if line.startswith("/") and not starts_with_soft_switch(line):
            command, _, value = line.partition(" ")
            if command == "/reset":
                history.clear()
                printer.note("对话已清空 / conversation cleared")
            elif command == "/think" and value.strip() in {"on", "off"}:
                settings = replace(settings, enable_thinking=value.strip() == "on")
                printer.note(f"思考 / reasoning: {value.strip()}")
            elif command in {"/quit", "/exit"}:
                return
            else:
                printer.note(CHAT_HELP)
            continue
        messages = with_system_prompt([*history, {"role": "user", "content": line}], system_prompt)
        problem = prompt_too_long(engine, messages, settings)
        if problem:
            printer.note(f"too long for the model: {problem}; /reset starts a new conversation")
            continue
        printer = ReplyPrinter(out, printer.style)
        reply = stream_reply(engine, messages, settings, printer)
        if reply.answer:
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply.answer}]


def parse_line(line: str, system_prompt: str) -> tuple[dict, Conversation]:
    """A JSONL line with `question` (and optional `id`) or `messages` -> (fields to echo, conversation)."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("line is not a JSON object")
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("line holds a lone surrogate escape (such as \\ud800): not text") from None
    echo = {key: record[key] for key in ("id", "question") if key in record}
    if "messages" in record:
        messages = record["messages"]
        valid = isinstance(messages, list) and all(
            isinstance(m, dict)
            and m.get("role") in {"system", "user", "assistant"}
            and isinstance(m.get("content"), str)
            for m in messages
        )
        if not valid or not messages or messages[-1]["role"] != "user":
            raise ValueError("`messages` must be a list of {role, content} turns ending with a user turn")
        return echo, with_system_prompt(messages, system_prompt)
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("no non-empty `question` string (nor `messages`)")
    return echo, with_system_prompt([{"role": "user", "content": question}], system_prompt)


def read_requests(path: Path, system_prompt: str) -> Iterator[tuple[dict, Conversation | None]]:
    """(record, conversation) per input line; a bad line (not UTF-8, not JSON, no question) gives an error
    record and no conversation, and the other lines are answered."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            base = {"line": number}
            try:
                line = (raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw).decode("utf-8")
            except UnicodeDecodeError as error:
                yield {**base, "error": f"not UTF-8 text ({error.reason} at byte {error.start})"}, None
                continue
            try:
                echo, conversation = parse_line(line, system_prompt)
            except (ValueError, KeyError, TypeError, RecursionError) as error:  # incl. JSONDecodeError
                yield {**base, "error": f"{type(error).__name__}: {error}"}, None
                continue
            yield {**base, **echo}, conversation


def answer_file(
    engine: Engine,
    input_path: Path,
    output_path: Path,
    settings: GenerationSettings,
    system_prompt: str,
    batch_size: int,
) -> dict[str, int]:
    """One output line per input line, in order. The lines go to a temporary file beside `output_path`,
    renamed to it at the end (never half a file); a run that stops early keeps what it did in
    `<output>.partial`."""
    requests = list(read_requests(input_path, system_prompt))
    counts = {"lines": len(requests), "answered": 0, "errors": 0, "truncated": 0}
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            write_answers(engine, requests, out, counts, settings, batch_size)
    except BaseException:
        if partial.stat().st_size:
            log.warning("stopped early: the %s lines answered so far are in %s", counts["answered"], partial)
        else:
            partial.unlink()
        raise
    os.replace(partial, output_path)
    return counts


def write_answers(
    engine: Engine,
    requests: list[tuple[dict, Conversation | None]],
    out: TextIO,
    counts: dict[str, int],
    settings: GenerationSettings,
    batch_size: int,
) -> None:
    """Answer the requests chunk by chunk, one line per request, counting answers, errors and cut answers."""
    from tqdm.auto import tqdm

    chunk = batch_size * CHUNK_BATCHES
    with tqdm(total=len(requests), desc="answering", unit="q") as bar:
        for start in range(0, len(requests), chunk):
            records = [dict(record) for record, _ in requests[start : start + chunk]]
            pending = []
            for record, (_, conversation) in zip(records, requests[start : start + chunk], strict=True):
                if conversation is None:
                    continue
                if problem := prompt_too_long(engine, conversation, settings):
                    record["error"] = problem
                    continue
                pending.append((record, conversation))
            if pending:
                generations = engine.generate([c for _, c in pending], settings, batch_size=batch_size)
                for (record, _), generation in zip(pending, generations, strict=True):
                    record.update(
                        reasoning=generation.reasoning,
                        answer=generation.answer,
                        well_formed=generation.well_formed,
                        truncated=generation.truncated,
                        reasoning_tokens=generation.reasoning_tokens,
                        answer_tokens=generation.answer_tokens,
                    )
                    counts["truncated"] += generation.truncated
            for record in records:
                counts["errors" if "error" in record else "answered"] += 1
                out.write(dumps_line(record))
            out.flush()
            bar.update(len(records))


def check_output_file(output: Path, input_path: Path) -> None:
    """Before any model loads: the answers file is a file, and never the questions file."""
    if output.exists() and output.samefile(input_path):
        raise InferenceError(f"--output {output} is the input file: the questions would be overwritten.")
    if output.is_dir():
        raise InferenceError(f"--output {output} is a folder: name a file, e.g. {output / 'answers.jsonl'}.")
    parent = next((folder for folder in output.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InferenceError(f"--output {output}: {parent} is a file, not a folder.")


@dataclass
class InferArguments:
    """What `medsft infer` answers: one question, a file of them, or (neither) a chat in the terminal."""

    question: str | None = option("one question, answered with streaming (default: a chat)", aliases=["-q"])
    file: Path | None = option("JSONL: one {question} or {messages} object per line")
    output: Path | None = option("answers JSONL for --file (default: <file>.answers.jsonl)")
    batch_size: WholeNumber = option("questions per generate batch", 8)

    def __post_init__(self) -> None:
        if self.question is not None and self.file is not None:
            raise OptionError(
                "--file cannot go with --question", "argument --file: not allowed with argument --question/-q"
            )
        check_range(self, "batch_size", 1)


def build_parser() -> HfArgumentParser:
    return command_parser(
        "medsft infer",
        "Chat in the terminal (the default), answer one question, or a JSONL file of them; answers stream: "
        "the reasoning (dimmed), then the answer. One question and the chat use --backend hf unless vllm is "
        "named (vLLM takes longer to start than to answer).",
        InferArguments,
        SamplingArguments,
    )


def main(argv: list[str] | None = None) -> int:
    options, generation = parse(build_parser(), argv)
    if options.file is not None and not options.file.is_file():
        raise InferenceError(f"Input file {options.file} does not exist.")
    if options.question is not None and not options.question.strip():
        raise InferenceError("The question is empty.")
    output = None
    if options.file is not None:
        output = options.output or options.file.with_name(options.file.stem + ".answers.jsonl")
        check_output_file(output, options.file)
    settings = generation.settings()
    # one question: transformers unless vLLM is asked for by name (starting vLLM takes longer than answering)
    backend = generation.backend if options.file is not None or generation.backend == "vllm" else "hf"
    engine = load_engine(
        resolve_model_argument(generation.model),
        device=generation.device,
        dtype=generation.dtype,
        backend=backend,
        max_batch_size=options.batch_size,
    )
    log.info("model: %s (%s, %s)", engine.model_dir, engine.backend, engine.device)
    try:
        system_prompt = system_prompt_for(engine.model_dir, generation.system_prompt)
        return answer(engine, options, settings, system_prompt, output)
    finally:
        engine.close()  # its decoding thread ends before the interpreter does


def answer(
    engine: Engine,
    options: InferArguments,
    settings: GenerationSettings,
    system_prompt: str,
    output: Path | None,
) -> int:
    """One question, the terminal chat, or a file of questions, as the options say."""
    if options.question is not None:
        messages = with_system_prompt([{"role": "user", "content": options.question}], system_prompt)
        problem = prompt_too_long(engine, messages, settings)
        if problem:
            raise InferenceError(
                f"The question is too long: {problem}. Shorten it or lower --max-new-tokens."
            )
        stream_answer(engine, messages, settings, sys.stdout)
        return 0
    if options.file is None:
        with terminal_of_our_own():
            chat(engine, settings, system_prompt, sys.stdout)
        return 0
    counts = answer_file(engine, options.file, output, settings, system_prompt, options.batch_size)
    log.info(
        f"wrote {counts['lines']} lines to {output}: {counts['answered']} answered "
        f"({counts['truncated']} hit --max-new-tokens), {counts['errors']} errors"
    )
    return 0


if __name__ == "__main__":
    from medsft.cli import run_command

    sys.exit(run_command("infer", main, sys.argv[1:]))
