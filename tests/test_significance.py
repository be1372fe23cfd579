"""Intervals, chance levels, answer bias and the paired test against textbook values worked out by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medsft.significance import (
    UNPARSEABLE,
    Accuracy,
    Chance,
    Dominance,
    accuracy_interval,
    answer_counts,
    chance_level,
    chi_square_p_1df,
    dominant_answer,
    exact_binomial_p,
    mcnemar,
    overall_accuracy,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))  # no successes: upper = z²/(n + z²)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    low, high = wilson_interval(50, 100)
    assert (low + high) / 2 == pytest.approx(0.5)  # symmetric around one half
    assert wilson_interval(50, 100, confidence=0.99)[0] < low  # wider at higher confidence


def test_accuracy_interval_bundles_the_numbers():
    assert accuracy_interval(81, 263) == Accuracy(81, 263, 81 / 263, *wilson_interval(81, 263))


@pytest.mark.parametrize(("correct", "total"), [(1, 0), (-1, 5), (6, 5)])
def test_impossible_counts_are_refused(correct, total):
    with pytest.raises(ValueError, match="correct <= total"):
        wilson_interval(correct, total)


def test_chance_level_takes_the_higher_of_uniform_and_majority():
    # four options each: uniform guessing 1/4; always "C" is right on 2 of 4
    assert chance_level(["A", "C", "C", "D"], [4, 4, 4, 4]) == Chance(0.25, 0.5, "C", 0.5)
    # mixed option counts: (1/4 + 1/4 + 1/5 + 1/5) / 4 = 0.225; every answer once: majority 1/4
    chance = chance_level(["A", "B", "C", "D"], [4, 4, 5, 5])
    assert (chance.uniform, chance.majority, chance.majority_answer) == (pytest.approx(0.225), 0.25, "A")
    assert chance.level == 0.25
    # a multi-answer question with 5 options: one of 2^5 - 1 = 31 non-empty sets
    assert chance_level(["ACE", "B"], [5, 5]).uniform == pytest.approx((1 / 31 + 1 / 5) / 2)


def test_chance_level_refuses_bad_input():
    with pytest.raises(ValueError, match="one option count per gold answer"):
        chance_level(["A", "B"], [4])
    with pytest.raises(ValueError, match="at least two options"):
        chance_level(["A"], [1])


def test_answer_counts_order_letters_then_sets_then_unparseable():
    counts = answer_counts(["C", None, "AC", "A", "C", None])
    assert list(counts.items()) == [("A", 1), ("C", 2), ("AC", 1), (UNPARSEABLE, 2)]


def test_dominant_answer_flags_one_letter_for_most_questions():
    # a model that always answers "A" on a benchmark whose key has A for 17.5 % of the questions
    predicted = ["A"] * 40
    assert dominant_answer(predicted) == Dominance("A", 1.0)
    assert dominant_answer(["A"] * 6 + ["B"] * 4) is None  # exactly 60 % is not more than 60 %
    assert dominant_answer(["A"] * 7 + ["B"] * 3) == Dominance("A", 0.7)
    assert dominant_answer(["B"] * 7 + [None] * 5) is None  # the share is of all questions: 7/12
    assert dominant_answer([None, None]) is None


@pytest.mark.parametrize(
    ("smaller", "trials", "p"),
    [
        (1, 10, 2 * (1 + 10) / 1024),  # P(X <= 1) for Binomial(10, 1/2), doubled = 0.021484375
        (0, 5, 2 / 32),
        (3, 6, 1.0),  # 2 * (1 + 6 + 15 + 20) / 64 > 1: capped
        (0, 0, 1.0),
    ],
)
def test_exact_binomial_p(smaller, trials, p):
    assert exact_binomial_p(smaller, trials) == pytest.approx(p)


@pytest.mark.parametrize(
    ("statistic", "p"),
    [(3.841458820694124, 0.05), (6.634896601021214, 0.01), (10.827566170662733, 0.001), (0.0, 1.0)],
)
def test_chi_square_p_1df_matches_critical_values(statistic, p):
    assert chi_square_p_1df(statistic) == pytest.approx(p, rel=1e-9)


def paired(base_only: int, tuned_only: int, both: int = 0, neither: int = 0) -> tuple[list[bool], list[bool]]:
    base = [True] * base_only + [False] * tuned_only + [True] * both + [False] * neither
    tuned = [False] * base_only + [True] * tuned_only + [True] * both + [False] * neither
    return base, tuned


def test_mcnemar_exact_for_few_discordant_pairs():
    result = mcnemar(*paired(1, 9, both=30, neither=10))
    assert (result.pairs, result.base_only, result.tuned_only) == (50, 1, 9)
    assert result.method == "exact binomial" and result.statistic is None
    assert result.p_value == pytest.approx(22 / 1024)
    assert result.difference == pytest.approx(8 / 50)
    assert mcnemar(*paired(0, 0, both=5)).p_value == 1.0  # identical outcomes: no evidence of change


def test_mcnemar_chi_square_with_continuity_correction():
    # Agresti, Categorical Data Analysis, presidential approval: 794 / 150 / 86 / 570
    result = mcnemar(*paired(150, 86, both=794, neither=570))
    assert result.method == "chi-square with continuity correction"
    assert result.statistic == pytest.approx((64 - 1) ** 2 / 236)  # 16.818
    assert result.p_value == pytest.approx(chi_square_p_1df(3969 / 236))
    assert 1e-5 < result.p_value < 1e-4
    assert result.difference == pytest.approx(-64 / 1600)


def test_mcnemar_switches_method_at_25_discordant_pairs():
    assert mcnemar(*paired(12, 12)).method == "exact binomial"
    at_threshold = mcnemar(*paired(12, 13))
    assert at_threshold.method == "chi-square with continuity correction"
    assert at_threshold.statistic == 0.0 and at_threshold.p_value == 1.0  # |b - c| - 1 = 0


def test_mcnemar_refuses_unpaired_outcomes():
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar([True], [True, False])
    with pytest.raises(ValueError, match="no paired outcomes"):
        mcnemar([], [])


def test_overall_pooled_and_macro():
    correct = [True, True, True, False, True]
    groups = ["anatomy", "anatomy", "anatomy", "anatomy", "virology"]
    overall = overall_accuracy(correct, groups)
    assert overall.pooled.accuracy == pytest.approx(4 / 5)
    assert overall.macro == pytest.approx((3 / 4 + 1) / 2)
    assert list(overall.groups) == ["anatomy", "virology"]
    assert overall.groups["anatomy"] == accuracy_interval(3, 4)
    with pytest.raises(ValueError, match="one group per outcome"):
        overall_accuracy([True], [])


def test_importing_loads_no_model_code():
    check = "import sys, medsft.significance; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", check], check=True)
