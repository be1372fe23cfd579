"""How often the decontamination rule flags real training rows against a real benchmark (docs/data.md).

    MEDSFT_SHARED=../shared python -m benchmarks.decontamination_check
    python -m benchmarks.decontamination_check --rows FILE.jsonl --benchmark NAME_OR_FILE --threshold 0.6

For every row of --rows (raw {question, …} rows) it reports the benchmark question whose stem the row covers
most, and whether that share passes the threshold. Rows of a set that was never built from the benchmark
should not match: each match is printed with both texts so a person can judge it. Also printed: the
distribution of the best share (how far the rule's threshold is from what unrelated rows reach), how long
indexing and matching take, and the recall on planted copies: every indexed benchmark stem, its punctuation
turned into spaces, inside a longer question, followed by options in reverse order, must be found.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from medsft.decontamination import (
    MIN_NGRAMS,
    NGRAM,
    THRESHOLD,
    BenchmarkIndex,
    load_benchmark_index,
    normalise,
)
from medsft.paths import shared_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_rows = shared_dir() / "data" / "delicate_medical_r1_data" / "val.jsonl"
    parser.add_argument(
        "--rows", default=str(default_rows), help="raw rows (JSON Lines) with a question field"
    )
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--benchmark", action="append", help="benchmark name or file (default: xmedbench)")
    parser.add_argument("--ngram", type=int, default=NGRAM)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--min-ngrams", type=int, default=MIN_NGRAMS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    index = load_benchmark_index(
        args.benchmark or ["xmedbench"], ngram=args.ngram, threshold=1e-9, min_ngrams=args.min_ngrams
    )
    indexed = time.perf_counter() - started
    with open(args.rows, encoding="utf-8") as handle:
        questions = [json.loads(line)[args.question_field] for line in handle if line.strip()]
    rule = BenchmarkIndex(index.questions, args.ngram, args.threshold, args.min_ngrams)
    started = time.perf_counter()
    best = [index.match(question) for question in questions]
    matched = time.perf_counter() - started
    shares = sorted((overlap.share if overlap else 0.0) for overlap in best)
    flagged = [(q, o) for q, o in zip(questions, best, strict=True) if o and o.share >= args.threshold]

    print(f"benchmark stems indexed: {len(index)} (too short to index: {index.too_short})")
    print(f"rows: {len(questions)}; n-gram {args.ngram}, threshold {args.threshold}")
    print(f"matches: {len(flagged)} of {len(questions)} ({len(flagged) / max(len(questions), 1):.2%})")
    quantiles = statistics.quantiles(shares, n=100) if len(shares) > 1 else shares
    print(
        f"best share per row: median {statistics.median(shares):.3f}, p99 {quantiles[-1]:.3f}, "
        f"max {shares[-1]:.3f}"
    )
    print(
        f"time: index {indexed:.2f} s, matching {matched:.3f} s ({matched / len(questions) * 1e3:.2f} ms/row)"
    )
    planted = [
        f"请回答下面的题目：{re.sub(r'[，。？、：；,.?:;（）()]', ' ', question.text)} 选项 D C B A"
        for question in index.questions
    ]
    overlaps = list(map(rule.match, planted))
    found = sum(overlap is not None for overlap in overlaps)
    itself = sum(
        overlap is not None and normalise(overlap.question.text) == normalise(question.text)
        for overlap, question in zip(overlaps, index.questions, strict=True)
    )
    print(
        f"recall on planted copies: {found} of {len(planted)} found ({found / len(planted):.2%}); "
        f"{itself} named as the planted question itself, the others as a near-identical stem (a copy "
        "without its numbering, say)"
    )
    for question, overlap in flagged:
        print(f"- row: {' '.join(question.split())[:160]}\n  {overlap.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
