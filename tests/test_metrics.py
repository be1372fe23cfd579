"""Metric functions on hand-made cases whose values are known."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from medsft import metrics
from medsft.metrics import SegmentLoss


def test_metrics_are_model_free():
    """`medsft eval --from-predictions` recomputes metrics without torch or transformers."""
    script = (
        "import sys, medsft.metrics; "
        "print(sorted(m for m in ('torch', 'transformers', 'medsft.engine') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\n先分析病因。\n</think>\n\n多休息，多喝水。", True),
        ("<think>先分析病因。</think>多休息。", True),
        ("<think>\n先分析病因，还没想完", False),  # never closed (truncated in the reasoning)
        ("<think>\n分析\n</think>\n\n", False),  # empty answer
        ("<think>a</think><think>b</think>答案", False),  # two think blocks
        ("<think>a</think>答案</think>", False),  # a stray closing tag in the answer
        ("多休息，多喝水。", False),  # no think block at all
        ("分析</think>答案", False),  # opening tag missing
    ],
)
def test_think_compliance(text, expected):
    assert metrics.think_compliant(text) is expected


@pytest.mark.parametrize(
    "text, thinking, expected",
    [
        ("<think>\n先分析。\n</think>\n\n多喝水。", True, True),
        ("<think>\n\n</think>\n\n多喝水。", True, False),  # empty reasoning: the other mode leaking in
        ("<think>\n没写完", True, False),
        ("多喝水。", True, False),
        ("多喝水。", False, True),  # the empty block was in the prompt: a clean answer
        ("<think>\n\n</think>\n\n多喝水。", False, False),  # a second, empty block
        ("先分析。\n</think>\n\n多喝水。", False, False),  # a leftover closing tag
        ("<think>\n先分析。\n</think>\n\n多喝水。", False, False),
        ("   ", False, False),
    ],
)
def test_mode_adherence(text, thinking, expected):
    assert metrics.follows_mode(text, thinking) is expected


def test_rouge_perfect_disjoint_and_half():
    answer = "高血压患者应低盐饮食，规律服药，定期监测血压。"
    assert metrics.rouge_f(answer, answer) == {"rouge-1": 1.0, "rouge-2": 1.0, "rouge-l": 1.0}
    assert metrics.rouge_f("苹果香蕉", "汽车火车飞机") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    # two words each, one shared: P = R = 1/2; no shared bigram; LCS of one word
    half = metrics.rouge_f("apple banana", "apple cherry")
    assert half["rouge-1"] == pytest.approx(0.5, abs=1e-6)
    assert half["rouge-2"] == 0.0
    assert half["rouge-l"] == pytest.approx(0.5, abs=1e-6)


def test_rouge_empty_prediction_scores_zero():
    assert metrics.rouge_f("", "参考答案") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert metrics.rouge_f("   ", "参考答案")["rouge-l"] == 0.0


@pytest.mark.parametrize("answer", ["。", "，。！", "……", "?!", "（）。\n——"])
def test_rouge_punctuation_only_answer_scores_zero(answer):
    reference = "高血压患者应低盐饮食，规律服药。定期监测血压！……"  # holds every punctuation mark tried
    assert metrics.rouge_f(answer, reference) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_rouge_punctuation_never_matches():
    # without the shared "，" and "。" the two answers have no word in common
    assert metrics.rouge_f("多喝水，早点睡。", "注意休息，及时就医。")["rouge-1"] == 0.0
    # punctuation neither adds to nor takes from a score: the same words score the same
    assert metrics.rouge_f("注意 休息", "注意休息，及时就医。") == metrics.rouge_f(
        "注意，休息！", "注意休息，及时就医。"
    )
    # ROUGE-L still runs over sentences (split after 。！？ and at line breaks)
    assert metrics.rouge_words("注意休息。及时就医！") == "注意 休息\n及时 就医"


def test_bleu_perfect_and_disjoint():
    answer = "发热时多休息、多喝水，体温超过38.5℃可服用布洛芬。"
    assert metrics.sentence_bleu4(answer, answer) == pytest.approx(1.0)
    assert metrics.corpus_bleu4([answer, "头痛欲裂"], [answer, "头痛欲裂"]) == pytest.approx(1.0)
    assert metrics.sentence_bleu4("甲乙丙丁戊", "子丑寅卯辰") == 0.0
    assert metrics.corpus_bleu4(["甲乙丙丁戊"], ["子丑寅卯辰"]) == 0.0
    assert metrics.sentence_bleu4("", "子丑") == 0.0


def test_bleu_known_values_on_characters():
    # 1- to 4-gram precisions 4/5, 3/4, 2/3, 1/2; same length: no brevity penalty
    assert metrics.corpus_bleu4(["ABCDE"], ["ABCDF"]) == pytest.approx((0.8 * 0.75 * (2 / 3) * 0.5) ** 0.25)
    # sentence level: add-one on 2- to 4-grams → 4/5, 4/5, 3/4, 2/3
    assert metrics.sentence_bleu4("ABCDE", "ABCDF") == pytest.approx((0.8 * 0.8 * 0.75 * (2 / 3)) ** 0.25)
    # whitespace is not a token
    assert metrics.sentence_bleu4("A B C D E", "ABCDF") == metrics.sentence_bleu4("ABCDE", "ABCDF")
    # a prefix of half the length: precisions 1, brevity penalty exp(1 - 10/5)
    assert metrics.corpus_bleu4(["甲乙丙丁戊"], ["甲乙丙丁戊己庚辛壬癸"]) == pytest.approx(math.exp(-1))


def test_corpus_bleu_pools_counts_over_rows():
    # row 1 perfect (5 chars), row 2 has no 4-gram match: the corpus score is not the mean of sentence scores
    predictions, references = ["甲乙丙丁戊", "子丑寅"], ["甲乙丙丁戊", "子丑卯"]
    p1, p2, p3, p4 = 7 / 8, 5 / 6, 3 / 4, 2 / 2
    expected = (p1 * p2 * p3 * p4) ** 0.25
    assert metrics.corpus_bleu4(predictions, references) == pytest.approx(expected)
    with pytest.raises(ValueError):
        metrics.corpus_bleu4(["a"], [])


def test_repetition_loop_detection():
    sentence = "患者应注意休息并按时服药。"  # 13 characters
    varied = (
        "发热是机体对感染的反应。成人体温超过38.5℃时可以服用退热药，"
        "同时多喝水、注意休息，如持续高热应及时就医。"
    )
    assert not metrics.has_repetition_loop(varied)
    assert metrics.has_repetition_loop(varied + sentence * 4)  # 4 repeats, 52 characters
    assert not metrics.has_repetition_loop(varied + sentence * 2)  # said twice: not a loop
    assert metrics.has_repetition_loop("答" * 40)
    assert not metrics.has_repetition_loop("答" * 39)  # shorter than the minimum span
    assert metrics.has_repetition_loop(varied + "，以及" * 20)  # a short unit looping
    assert not metrics.has_repetition_loop("")


def test_distinct_n():
    assert metrics.distinct_n("ABCDEFG", 4) == 1.0
    assert metrics.distinct_n("AAAAA", 4) == 0.5  # AAAA twice
    assert metrics.distinct_n("ABCABCABC", 3) == pytest.approx(3 / 7)
    assert metrics.distinct_n("AB", 4) == 1.0  # too short to repeat


def test_assistant_segments_and_losses():
    think_close, end, newline = 9, 5, 6
    # prompt 1 2 3; assistant turn from index 3: <think>=7 … </think>=9, answer 4 4, end of turn, newline
    ids = [1, 2, 3, 7, 8, 8, think_close, 4, 4, end, newline]
    reasoning, answer = metrics.assistant_segments(ids, 3, think_close)
    assert list(reasoning) == [3, 4, 5, 6]
    assert list(answer) == [7, 8, 9, 10]  # the newline after the end of turn is learned too
    nll = [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]
    reasoning_loss, answer_loss = metrics.segment_losses(nll, reasoning, answer)
    assert (reasoning_loss.nll, reasoning_loss.tokens) == (10.0, 4)
    assert (answer_loss.nll, answer_loss.tokens) == (100.0, 4)
    assert answer_loss.mean == 25.0
    assert answer_loss.perplexity == pytest.approx(math.exp(25.0))
    # no </think>: the whole turn is answer
    reasoning, answer = metrics.assistant_segments([1, 2, 4, 4, end, newline], 2, think_close)
    assert len(reasoning) == 0 and list(answer) == [2, 3, 4, 5]


def test_segment_loss_pooling_is_token_weighted():
    pooled = SegmentLoss(10.0, 10).add(SegmentLoss(1.0, 1))
    assert pooled.mean == pytest.approx(1.0)
    assert math.isnan(SegmentLoss().mean)


def test_small_summaries():
    assert metrics.mean([1, 2, 3]) == 2.0
    assert metrics.share([True, False, False, True]) == 0.5
    assert metrics.median([3, 1, 2]) == 2.0
    assert math.isnan(metrics.mean([]))


def test_jieba_segments_without_logging_its_dictionary_build():
    import subprocess
    import sys

    code = "from medsft.metrics import jieba_words; print(jieba_words('头痛怎么办？'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.split() == ["头痛", "怎么办"], result.stderr
    assert result.stderr == ""  # not "Building prefix dict …", "Loading model cost …"
