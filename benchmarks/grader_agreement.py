"""How far medsft's letter extraction agrees with hand-graded answers: overall, per class, and every
disagreement (the human label decides).

    python -m benchmarks.grader_agreement --corpus tests/answer_corpus.jsonl [FILE ...]

Reads both corpus schemas (medsft.answer_corpus). Exit status 0 whatever the agreement; 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medsft.answer_corpus import Agreement, load_corpus, measure
from medsft.cli import run_command


def describe(path: Path, agreement: Agreement) -> list[str]:
    lines = [
        f"{path}: {agreement.total - len(agreement.disagreements)}/{agreement.total} agree "
        f"({agreement.share:.1%}); wrong letters read: {agreement.wrong_letters}; "
        f"no letter where the human reads one: {len(agreement.disagreements) - agreement.wrong_letters}"
    ]
    for kind, (agreeing, total) in agreement.by_class.items():
        lines.append(f"  {kind:<16} {agreeing}/{total} ({agreeing / total:.1%})")
    for disagreement in agreement.disagreements:
        row, read = disagreement.row, disagreement.read
        lines.append(
            f"  ✗ {row.id} [{row.kind}] graded {row.graded or '-'!r}, read {read.letters or '-'!r} "
            f"({read.reason}): {row.answer!r}"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grader_agreement", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--corpus", nargs="+", type=Path, required=True, help="corpus JSONL file(s)")
    args = parser.parse_args(argv)
    for path in args.corpus:
        print("\n".join(describe(path, measure(load_corpus(path)))))
    return 0


if __name__ == "__main__":
    sys.exit(run_command("grader-agreement", main, sys.argv[1:]))
