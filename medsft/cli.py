"""`medsft <command> …`: one entry point; each command's module owns its own arguments.

Errors follow one contract (medsft/errors.py): a MedsftError is one line on stderr and exit code 2;
`--debug` (or MEDSFT_DEBUG=1) adds its traceback. Progress goes through `logging`.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import traceback

from medsft.errors import EXIT_INTERRUPTED, EXIT_USAGE, MedsftError

COMMANDS = {
    "data": ("medsft.data", "convert raw {question, think, answer} rows into chat messages"),
    "train": ("medsft.train", "fine-tune with a recipe from recipes/"),
    "eval": ("medsft.evaluate", "in-domain metrics, medical MCQ benchmark, base-vs-tuned report"),
    "infer": ("medsft.infer", "answer a question (streamed) or a file of questions"),
    "demo": ("medsft.demo", "serve the Gradio medical chat"),
    "serve": ("medsft.serve", "serve an OpenAI-compatible chat-completions API"),
}

log = logging.getLogger("medsft")

# Operating-system errors that come from the machine or from a path the user gave, not from a bug: one line
# each, with what to do. Any other OSError keeps its traceback.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some space, or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EEXIST: "a file stands where a folder is needed: choose another path",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
}


def usage() -> str:
    lines = ["usage: medsft [--debug] <command> [options]", "", "commands:"]
    lines += [f"  {name:<6} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines.append("\n`medsft <command> --help` shows a command's options.")
    return "\n".join(lines)


def debug_enabled() -> bool:
    return os.environ.get("MEDSFT_DEBUG", "").lower() in {"1", "true", "yes"}


def not_a_gpu_warning(record: logging.LogRecord) -> bool:
    """DeepSpeed (imported by transformers on every command) warns on each CPU-only machine that it found no
    accelerator: medsft says which device it uses itself."""
    return not record.getMessage().startswith("Setting accelerator to CPU")


def configure_logging(command: str, main_process: bool = True) -> None:
    """`medsft <command>: message` lines on stderr; other ranks of a multi-process run log warnings only."""
    logging.getLogger("DeepSpeed").addFilter(not_a_gpu_warning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"medsft {command}: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug_enabled() else logging.INFO if main_process else logging.WARNING)


def run_command(command: str, main, argv: list[str]) -> int:
    """Run a command's `main(argv)` under the error contract; the exit code it should end with."""
    configure_logging(command, main_process=os.environ.get("RANK", "0") == "0")
    try:
        return int(main(argv) or 0)
    except MedsftError as error:
        if debug_enabled():
            traceback.print_exc()
        print(f"medsft {command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interruption:
        if debug_enabled():
            traceback.print_exc()
        print(f"medsft {command}: {str(interruption) or 'stopped by Ctrl-C'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRORS:
            raise
        if debug_enabled():
            traceback.print_exc()
        where = f"{error.filename}: " if error.filename else ""
        print(
            f"medsft {command}: {where}{error.strerror}: {ENVIRONMENT_ERRORS[error.errno]}.", file=sys.stderr
        )
        return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--debug":
        os.environ["MEDSFT_DEBUG"] = "1"
        argv = argv[1:]
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medsft: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[name][0])
    return run_command(name, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
