"""How much a multiple-choice accuracy can be trusted: intervals, chance levels, letter bias, paired tests.

Pure functions over plain values (no model, no torch), so a report can be recomputed from saved predictions.

- `accuracy_interval`: the accuracy with its Wilson score interval (95 % by default).
- `chance_level`: what guessing scores on these questions: the higher of uniform guessing and always giving
  the most frequent gold answer.
- `answer_counts`, `dominant_answer`: the predicted (or gold) answer distribution, and the answer a model
  gives for more than 60 % of the questions, which makes its accuracy mostly a property of the answer key.
- `mcnemar`: whether two models differ on the same questions beyond noise (exact binomial test below 25
  discordant pairs, chi-square with continuity correction from 25 on).
- `overall_accuracy`: "overall" two ways: pooled over questions and the macro average over subjects or
  sources.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

UNPARSEABLE = "unparseable"  # the answer key of predictions no letter could be read from
DOMINANCE_THRESHOLD = 0.6
EXACT_BELOW = 25  # discordant pairs under which McNemar's test is exact (binomial)


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int
    accuracy: float
    low: float  # the confidence interval (Wilson score)
    high: float


@dataclass(frozen=True)
class Chance:
    uniform: float  # expected accuracy of a uniformly random answer of each question's kind
    majority: float  # accuracy of always giving the most frequent gold answer
    majority_answer: str
    level: float  # the higher of the two: accuracy at or below it is no evidence of knowledge


@dataclass(frozen=True)
class Dominance:
    answer: str
    share: float  # of all questions, unparseable ones included


@dataclass(frozen=True)
class McNemar:
    pairs: int  # questions both models answered
    base_only: int  # right before, wrong after
    tuned_only: int  # wrong before, right after
    difference: float  # tuned accuracy minus base accuracy on these questions
    method: str  # "exact binomial" or "chi-square with continuity correction"
    statistic: float | None  # the chi-square statistic (1 degree of freedom); None for the exact test
    p_value: float  # two-sided


@dataclass(frozen=True)
class Overall:
    pooled: Accuracy  # every question counts once
    macro: float  # the mean of the per-group accuracies: every subject or source counts once
    groups: dict[str, Accuracy]


def _check_counts(correct: int, total: int) -> None:
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct}/{total}")


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927; Newcombe 1998, method 3).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or total correct.
    """
    _check_counts(correct, total)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    proportion = correct / total
    denominator = 1 + z * z / total
    center = (proportion + z * z / (2 * total)) / denominator
    spread = proportion * (1 - proportion) / total + z * z / (4 * total * total)
    half_width = z / denominator * math.sqrt(spread)
    return max(0.0, center - half_width), min(1.0, center + half_width)


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> Accuracy:
    low, high = wilson_interval(correct, total, confidence)
    return Accuracy(correct, total, correct / total, low, high)


def chance_level(gold: Sequence[str], option_counts: Sequence[int]) -> Chance:
    """Chance accuracy for questions with these gold answers ("C", "ACE") and numbers of options.

    Uniform guessing picks one of the k options of a single-answer question (1/k) or one of the 2^k − 1
    non-empty option sets of a multi-answer question, which is scored on an exact set match.
    """
    if not gold or len(gold) != len(option_counts):
        raise ValueError(
            f"need one option count per gold answer, got {len(gold)} answers and {len(option_counts)} counts"
        )
    if any(count < 2 for count in option_counts):
        raise ValueError("every question needs at least two options")
    uniform = sum(
        1 / count if len(answer) == 1 else 1 / (2**count - 1)
        for answer, count in zip(gold, option_counts, strict=True)
    ) / len(gold)
    majority_answer, majority_count = _most_common(gold)
    majority = majority_count / len(gold)
    return Chance(uniform, majority, majority_answer, max(uniform, majority))


def _most_common(answers: Iterable[str]) -> tuple[str, int]:
    counts = Counter(answers)
    top = max(counts.values())
    return min(answer for answer, count in counts.items() if count == top), top  # ties: the first letter


def answer_counts(answers: Iterable[str | None]) -> dict[str, int]:
    """How often each answer was given: single letters first, then letter sets, then `UNPARSEABLE` (None)."""
    counts = Counter(UNPARSEABLE if answer is None else answer for answer in answers)
    return {key: counts[key] for key in sorted(counts, key=lambda key: (key == UNPARSEABLE, len(key), key))}


def dominant_answer(
    predicted: Sequence[str | None], threshold: float = DOMINANCE_THRESHOLD
) -> Dominance | None:
    """The answer given for more than `threshold` of all questions (unparseable ones included), if any."""
    parsed = [answer for answer in predicted if answer is not None]
    if not parsed:
        return None
    answer, count = _most_common(parsed)
    share = count / len(predicted)
    return Dominance(answer, share) if share > threshold else None


def mcnemar(
    base_correct: Sequence[bool], tuned_correct: Sequence[bool], exact_below: int = EXACT_BELOW
) -> McNemar:
    """McNemar's test on two models' outcomes for the same questions, in the same order.

    Only the discordant pairs count: b questions only the base model got right, c only the tuned one. With
    b + c < `exact_below` the two-sided exact binomial test (b ~ Binomial(b + c, 1/2)); otherwise the
    chi-square statistic with Edwards' continuity correction, (|b − c| − 1)² / (b + c), on 1 degree of
    freedom (0 when |b − c| ≤ 1).
    """
    if len(base_correct) != len(tuned_correct):
        raise ValueError(f"paired outcomes differ in length: {len(base_correct)} and {len(tuned_correct)}")
    if not base_correct:
        raise ValueError("no paired outcomes to test")
    base_only = sum(1 for base, tuned in zip(base_correct, tuned_correct, strict=True) if base and not tuned)
    tuned_only = sum(1 for base, tuned in zip(base_correct, tuned_correct, strict=True) if tuned and not base)
    discordant = base_only + tuned_only
    difference = (tuned_only - base_only) / len(base_correct)
    if discordant < exact_below:
        p_value = exact_binomial_p(min(base_only, tuned_only), discordant)
        return McNemar(len(base_correct), base_only, tuned_only, difference, "exact binomial", None, p_value)
    statistic = max(abs(base_only - tuned_only) - 1, 0) ** 2 / discordant
    method = "chi-square with continuity correction"
    return McNemar(
        len(base_correct), base_only, tuned_only, difference, method, statistic, chi_square_p_1df(statistic)
    )


def exact_binomial_p(smaller: int, trials: int) -> float:
    """Two-sided p-value of `smaller` or fewer successes (or as few failures) in `trials` fair tosses."""
    if trials == 0:
        return 1.0
    if not 0 <= smaller <= trials / 2:
        raise ValueError(f"smaller must lie in [0, trials/2], got {smaller} of {trials}")
    tail = sum(math.comb(trials, k) for k in range(smaller + 1)) / 2**trials
    return min(1.0, 2 * tail)


def chi_square_p_1df(statistic: float) -> float:
    """Upper tail of the chi-square distribution with 1 degree of freedom: P(Z² ≥ x) = erfc(√(x/2))."""
    if statistic < 0:
        raise ValueError(f"a chi-square statistic is never negative, got {statistic}")
    return math.erfc(math.sqrt(statistic / 2))


def overall_accuracy(correct: Sequence[bool], groups: Sequence[str], confidence: float = 0.95) -> Overall:
    """Accuracy pooled over all questions and macro-averaged over groups (subjects or sources)."""
    if len(correct) != len(groups):
        raise ValueError(f"need one group per outcome, got {len(correct)} outcomes and {len(groups)} groups")
    if not correct:
        raise ValueError("no outcomes to average")
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for outcome, group in zip(correct, groups, strict=True):
        total[group] += 1
        right[group] += bool(outcome)
    per_group = {group: accuracy_interval(right[group], total[group], confidence) for group in sorted(total)}
    macro = sum(accuracy.accuracy for accuracy in per_group.values()) / len(per_group)
    pooled = accuracy_interval(sum(right.values()), len(correct), confidence)
    return Overall(pooled, macro, per_group)
