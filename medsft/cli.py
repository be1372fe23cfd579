"""`medsft <command> …`: one entry point; each command's module owns its own arguments."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("medsft.data", "convert raw {question, think, answer} rows into chat messages"),
    "train": ("medsft.train", "fine-tune with a recipe from recipes/"),
    "eval": ("medsft.evaluate", "in-domain metrics, medical MCQ benchmark, base-vs-tuned report"),
    "infer": ("medsft.infer", "answer a question (streamed) or a file of questions"),
    "demo": ("medsft.demo", "serve the Gradio medical chat"),
    "bench": ("medsft.bench", "measure training and generation speed against the original recipe"),
}


def usage() -> str:
    lines = ["usage: medsft <command> [options]", "", "commands:"]
    lines += [f"  {name:<6} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines.append("\n`medsft <command> --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medsft: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
