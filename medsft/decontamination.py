"""Benchmark decontamination: which training questions overlap a question of an evaluation benchmark.

The rule (measured in docs/data.md): both texts are normalised (NFKC, case folded, every character that is not
a letter or a digit dropped, so punctuation, whitespace and option labels do not count), cut into overlapping
character n-grams, and a training question overlaps a benchmark question when it holds at least `threshold` of
the benchmark stem's n-grams. The benchmark side is the stem alone (its options are not part of it), so a
training row that embeds the stem in a longer text, lists the options in another order or adds its own, still
matches. Stems too short to carry `min_ngrams` n-grams are not indexed by n-grams: a few characters say
nothing about a shared question (the report counts them). A multiple-choice training question given with its
options is still checked against them: it overlaps a short stem (`FDP`, `钙的生理功能有`) when its text
holds the whole stem and its options are the same texts, in any order.

An inverted index (n-gram -> benchmark questions) finds the candidates, so a check costs the row's n-grams,
not the benchmark's size. Used by `medsft data --mixture`; reusable by any stage that must keep benchmark
questions out of its training rows.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medsft.errors import MedsftError

if TYPE_CHECKING:
    from medsft.mcq import Question
from medsft.paths import shared_dir

NGRAM = 6  # characters; a Chinese 6-gram is a phrase, rarely shared by chance (docs/data.md)
THRESHOLD = 0.6  # share of the benchmark stem's n-grams found in the training question
MIN_NGRAMS = 3  # stems shorter than NGRAM + MIN_NGRAMS - 1 (8) characters are not indexed

# Benchmarks known by name: the XMedBench Chinese files medsft evaluates on (medsft.evaluate), whole or by
# their `source` field.
XMEDBENCH_FOLDER = Path("benchmarks") / "xmedbench_zh"
XMEDBENCH_FILES = ("test_zh.json", "dev_zh.json")
XMEDBENCH_SOURCES = ("cmb-single", "cmexam", "cmmlu-medical", "medqa-mcmle")
KNOWN_BENCHMARKS = ("xmedbench", *XMEDBENCH_SOURCES)


class DecontaminationError(MedsftError):
    """A benchmark to decontaminate against cannot be found or read."""


def normalise(text: str) -> str:
    """The text that matching compares: NFKC, case folded, letters and digits only."""
    return "".join(char for char in unicodedata.normalize("NFKC", text).casefold() if char.isalnum())


def ngrams(text: str, size: int = NGRAM) -> set[str]:
    """The character n-grams of normalised text (the whole text when it is shorter than `size`)."""
    if len(text) <= size:
        return {text} if text else set()
    return {text[start : start + size] for start in range(len(text) - size + 1)}


@dataclass(frozen=True)
class BenchmarkQuestion:
    benchmark: str  # the name or path it was listed by, with the question's source: "xmedbench/cmexam"
    text: str  # the stem as the benchmark writes it
    index: int  # its position in the benchmark
    options: tuple[str, ...] = ()  # its option texts, for the short-stem rule


@dataclass(frozen=True)
class Overlap:
    question: BenchmarkQuestion
    share: float  # share of the stem's n-grams found in the training question

    def describe(self) -> str:
        stem = " ".join(self.question.text.split())
        stem = stem if len(stem) <= 120 else stem[:117] + "..."
        where = f"{self.question.benchmark} question {self.question.index}"
        return f"{self.share:.0%} of the stem of {where}: {stem}"


class BenchmarkIndex:
    """Benchmark stems indexed by their n-grams; `match` finds the one a training question overlaps most."""

    def __init__(
        self,
        questions: Iterable[BenchmarkQuestion],
        ngram: int = NGRAM,
        threshold: float = THRESHOLD,
        min_ngrams: int = MIN_NGRAMS,
    ):
        if not 0 < threshold <= 1:
            raise DecontaminationError(f"threshold must be in (0, 1], not {threshold!r}.")
        self.ngram, self.threshold = ngram, threshold
        self.questions: list[BenchmarkQuestion] = []
        self.sizes: list[int] = []
        self.too_short = 0
        self.postings: dict[str, list[int]] = defaultdict(list)
        # short stem -> (its normalised option set, the question): matched on stem and options together
        self.short: dict[str, list[tuple[frozenset[str], BenchmarkQuestion]]] = defaultdict(list)
        seen: set[str] = set()
        for question in questions:
            grams = ngrams(normalise(question.text), ngram)
            if len(grams) < min_ngrams:
                self.too_short += 1
                if question.options and normalise(question.text):
                    self.short[normalise(question.text)].append((option_set(question.options), question))
                continue
            key = normalise(question.text)
            if key in seen:  # the same stem twice (dev and test, two sources): one entry is enough
                continue
            seen.add(key)
            position = len(self.questions)
            self.questions.append(question)
            self.sizes.append(len(grams))
            for gram in grams:
                self.postings[gram].append(position)

    def __len__(self) -> int:
        return len(self.questions)

    def match(self, text: str, options: Sequence[str] = ()) -> Overlap | None:
        """The benchmark question whose stem `text` covers most, when it covers at least the threshold; with
        the training question's `options`, else a short benchmark stem that `text` holds with the same
        options."""
        normalised = normalise(text)
        found = self.ngram_match(normalised)
        if found is None and options:
            wanted = option_set(options)
            for stem, entries in self.short.items():
                if stem in normalised:
                    question = next((q for opts, q in entries if opts == wanted), None)
                    if question is not None:
                        return Overlap(question, 1.0)
        return found

    def ngram_match(self, normalised: str) -> Overlap | None:
        hits: Counter[int] = Counter()
        for gram in ngrams(normalised, self.ngram):
            hits.update(self.postings.get(gram, ()))
        best = None
        for position, count in hits.items():
            share = count / self.sizes[position]
            if share >= self.threshold and (best is None or share > best[1]):
                best = (position, share)
        return None if best is None else Overlap(self.questions[best[0]], round(best[1], 4))


def option_set(options: Sequence[str]) -> frozenset[str]:
    return frozenset(normalise(option) for option in options)


def known_benchmark_questions(name: str) -> list[BenchmarkQuestion]:
    """The questions of a benchmark known by name: `xmedbench` (all of it) or one of its sources."""
    from medsft.mcq import load_benchmark  # imports torch: only when a benchmark is read

    folder = shared_dir() / XMEDBENCH_FOLDER
    files = [folder / file for file in XMEDBENCH_FILES if (folder / file).is_file()]
    if not files:
        raise DecontaminationError(
            f"Benchmark {name!r} needs the XMedBench Chinese files ({', '.join(XMEDBENCH_FILES)}) in "
            f"{folder}: put them there (or set MEDSFT_SHARED), or list the benchmark files by path."
        )
    questions = []
    for file in files:
        for question in load_benchmark([file]):
            if name == "xmedbench" or question.source == name:
                questions.append(as_benchmark_question(f"xmedbench/{question.source}", question))
    return questions


def as_benchmark_question(benchmark: str, question: Question) -> BenchmarkQuestion:
    return BenchmarkQuestion(benchmark, question.question, question.index, tuple(question.options.values()))


def file_benchmark_questions(spec: str) -> list[BenchmarkQuestion]:
    """The questions of benchmark files named as `medsft eval --mcq-file` takes them (file, folder, glob)."""
    from medsft.mcq import BenchmarkError, benchmark_files, load_benchmark

    try:
        files = benchmark_files([spec])
        questions = load_benchmark(files)
    except BenchmarkError as error:
        raise DecontaminationError(f"Benchmark {spec!r} to decontaminate against: {error}") from error
    return [as_benchmark_question(f"{spec}:{question.source}", question) for question in questions]


def load_benchmark_index(specs: Sequence[str], **rule: float) -> BenchmarkIndex:
    """One index over every listed benchmark: names medsft knows (KNOWN_BENCHMARKS) or benchmark files."""
    questions: list[BenchmarkQuestion] = []
    for spec in specs:
        if spec in KNOWN_BENCHMARKS:
            questions += known_benchmark_questions(spec)
        elif Path(spec).expanduser().exists() or any(char in spec for char in "*?["):
            questions += file_benchmark_questions(spec)
        else:
            raise DecontaminationError(
                f"Unknown benchmark {spec!r}: name one of {', '.join(KNOWN_BENCHMARKS)}, or a benchmark "
                "file, folder or glob pattern in a format `medsft eval --list-benchmarks` lists."
            )
    return BenchmarkIndex(questions, **rule)
