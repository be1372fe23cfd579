"""medsft's letter extraction next to OpenCompass's `first_option_postprocess` and evalscope's Chinese MCQ
parser (`parse_answers_zh`), all three against the same hand-graded answers; the human label decides.

The other two tools are no dependency of medsft: install them in a separate environment and run this there,
with medsft on the path (a tool that is not importable is skipped with one line saying so):

    python3 -m venv /tmp/cmpvenv && /tmp/cmpvenv/bin/pip install --no-deps opencompass evalscope
    /tmp/cmpvenv/bin/pip install mmengine-lite pydantic torch ...   # whatever their imports ask for
    PYTHONPATH=. /tmp/cmpvenv/bin/python -m benchmarks.grader_comparison --corpus tests/answer_corpus.jsonl

How each is called, as each tool calls it on a Chinese multiple-choice benchmark:
- OpenCompass: `first_option_postprocess(answer, option_letters)`; it returns at most one letter, so its
  agreement is also given on the answers a human reads as one letter or none.
- evalscope: `parse_answers_zh(state, multiple_correct=True, completion=answer)` with a stand-in task state
  holding only the options (it reads nothing else); several letters are allowed, as medsft reads them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from medsft.answer_corpus import GradedAnswer, load_corpus, read_answer
from medsft.cli import run_command

Reader = Callable[[GradedAnswer], str]


def medsft_reader() -> Reader:
    return lambda row: read_answer(row).letters or ""


def opencompass_reader() -> Reader:
    from opencompass.utils.text_postprocessors import first_option_postprocess

    return lambda row: first_option_postprocess(row.answer, row.options) or ""


def evalscope_reader() -> Reader:
    from evalscope.utils.multi_choices import parse_answers_zh

    def read(row: GradedAnswer) -> str:
        state = SimpleNamespace(choices=list(row.options), output=SimpleNamespace(completion=row.answer))
        return "".join(sorted(parse_answers_zh(state, multiple_correct=True, completion=row.answer)))

    return read


TOOLS = {
    "medsft": ("medsft", medsft_reader),
    "opencompass first_option_postprocess": ("opencompass", opencompass_reader),
    "evalscope parse_answers_zh": ("evalscope", evalscope_reader),
}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed as a package"


def _share(hits: int, total: int) -> str:
    return f"{hits}/{total} ({hits / total:.1%})" if total else "–"


def compare(rows: list[GradedAnswer], show: int) -> list[str]:
    single = [row for row in rows if len(row.graded) <= 1]
    lines = [
        f"{len(rows)} graded answers ({len(single)} read by the human as one letter or none)",
        "| extractor | version | agreement, all | one letter or none | wrong letters read |",
        "|---|---|---|---|---|",
    ]
    readings: dict[str, list[str]] = {}
    for name, (package, build) in TOOLS.items():
        try:
            reader = build()
        except ImportError as error:
            lines.append(f"| {name} | – | skipped: not importable here ({error}) | | |")
            continue
        read = [reader(row) for row in rows]
        readings[name] = read
        hits = sum(letters == row.graded for letters, row in zip(read, rows, strict=True))
        single_hits = sum(
            letters == row.graded for letters, row in zip(read, rows, strict=True) if len(row.graded) <= 1
        )
        wrong = sum(bool(letters) and letters != row.graded for letters, row in zip(read, rows, strict=True))
        lines.append(
            f"| {name} | {_version(package)} | {_share(hits, len(rows))} | "
            f"{_share(single_hits, len(single))} | {wrong} |"
        )
    if "medsft" in readings and len(readings) > 1:
        lines.append("")
        others = [name for name in readings if name != "medsft"]
        disputed = [i for i, row in enumerate(rows) if len({readings[name][i] for name in readings}) > 1]
        lines.append(
            f"Answers the extractors read differently: {len(disputed)} (first {min(show, len(disputed))}):"
        )
        for i in disputed[:show]:
            row = rows[i]
            read = ", ".join(
                f"{name.split()[0]} {readings[name][i] or '-'!r}" for name in ["medsft", *others]
            )
            lines.append(f"  {row.id} [{row.kind}] human {row.graded or '-'!r}; {read}: {row.answer[:80]!r}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grader_comparison", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--corpus", nargs="+", type=Path, required=True, help="corpus JSONL file(s)")
    parser.add_argument("--show", type=int, default=20, help="disputed answers to list per corpus")
    args = parser.parse_args(argv)
    for path in args.corpus:
        print(f"{path}:")
        print("\n".join(compare(load_corpus(path), args.show)))
    return 0


if __name__ == "__main__":
    sys.exit(run_command("grader-comparison", main, sys.argv[1:]))
