"""Metric functions on plain text and token ids: format compliance, ROUGE, BLEU-4, degeneration, loss split.

Everything here is deterministic and model-free (no torch, no transformers), so the report can be recomputed
from saved predictions.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medsft.chat_format import contains_think_tag, split_reasoning

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")

# --- think format -------------------------------------------------------------------------------------------


def think_compliant(text: str) -> bool:
    """Exactly one think block at the start, followed by a non-empty answer."""
    return split_reasoning(text).well_formed


def follows_mode(text: str, thinking: bool) -> bool:
    """Whether an output generated in one of Qwen3's modes keeps to it. Thinking mode: well-formed reasoning,
    one think block with something in it, then a non-empty answer (an empty block is the non-thinking mode
    leaking in). Non-thinking mode (the empty block is in the prompt): a non-empty answer with no reasoning
    text, i.e. no think tag anywhere (no second think block, no leftover of an empty one)."""
    if thinking:
        reasoned = split_reasoning(text)
        return reasoned.well_formed and bool(reasoned.reasoning)
    return bool(text.strip()) and not contains_think_tag(text)


# --- ROUGE on jieba words -----------------------------------------------------------------------------------

_rouge = None


def _rouge_scorer():
    global _rouge
    if _rouge is None:
        from rouge_chinese import Rouge

        _rouge = Rouge()
    return _rouge


def is_punctuation(word: str) -> bool:
    """A word made only of punctuation (Unicode categories P*: `。`, `，`, `……`, `!?`)."""
    return bool(word) and all(unicodedata.category(char).startswith("P") for char in word)


def jieba_words(text: str) -> str:
    """Space-separated jieba words of one sentence, whitespace and punctuation dropped."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # not its four lines about building the dictionary on each run
    words = (word.strip() for word in jieba.cut(text))
    return " ".join(word for word in words if word and not is_punctuation(word))


def rouge_words(text: str) -> str:
    """The text as it is scored: one sentence a line (split by rouge-chinese's own rule: after 。！？ and at
    line breaks), each sentence as space-separated jieba words without punctuation."""
    lines = (jieba_words(sentence) for sentence in _rouge_scorer().cut_sent(text))
    return "\n".join(line for line in lines if line)


def rouge_f(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one prediction against one reference, on jieba-segmented words (rouge-chinese;
    ROUGE-L over sentences). Punctuation is not a word: it never matches, and a prediction or reference
    without words (empty, whitespace or punctuation only) scores 0 (rouge-chinese refuses empty input).
    """
    hypothesis, target = rouge_words(prediction), rouge_words(reference)
    if not hypothesis or not target:
        return dict.fromkeys(ROUGE_KEYS, 0.0)
    scores = _rouge_scorer().get_scores(hypothesis, target)[0]
    # rouge-chinese returns F1 with a 1e-8 smoothing term: a perfect match gives 0.999999995.
    return {key: round(scores[key]["f"], 6) for key in ROUGE_KEYS}


# --- BLEU-4 on characters -----------------------------------------------------------------------------------


def characters(text: str) -> list[str]:
    """Character tokens for BLEU: every non-whitespace character is one token."""
    return [char for char in text if not char.isspace()]


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _clipped_matches(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> tuple[int, int]:
    hyp_counts, ref_counts = _ngrams(hypothesis, n), _ngrams(reference, n)
    matches = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
    return matches, max(len(hypothesis) - n + 1, 0)


def _brevity_penalty(hyp_length: int, ref_length: int) -> float:
    if hyp_length == 0:
        return 0.0
    return 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)


def sentence_bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 on characters, uniform weights, with add-one smoothing of the 2- to 4-gram precisions
    (Lin & Och 2004; NLTK's SmoothingFunction().method2). No unigram match, or an empty text, gives 0."""
    hypothesis, target = characters(prediction), characters(reference)
    if not hypothesis or not target:
        return 0.0
    log_precision = 0.0
    for n in range(1, 5):
        matches, total = _clipped_matches(hypothesis, target, n)
        if n == 1 and matches == 0:
            return 0.0
        if n > 1:
            matches, total = matches + 1, total + 1
        log_precision += math.log(matches / total) / 4
    return _brevity_penalty(len(hypothesis), len(target)) * math.exp(log_precision)


def corpus_bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 on characters (Papineni et al.): n-gram matches and lengths summed over all pairs,
    uniform weights, one brevity penalty, no smoothing. 0 when some n-gram order has no match at all."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    matches, totals = [0] * 4, [0] * 4
    hyp_length = ref_length = 0
    for prediction, reference in zip(predictions, references, strict=True):
        hypothesis, target = characters(prediction), characters(reference)
        hyp_length, ref_length = hyp_length + len(hypothesis), ref_length + len(target)
        for n in range(1, 5):
            matched, total = _clipped_matches(hypothesis, target, n)
            matches[n - 1] += matched
            totals[n - 1] += total
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / 4
    return _brevity_penalty(hyp_length, ref_length) * math.exp(log_precision)


# --- degeneration -------------------------------------------------------------------------------------------


def has_repetition_loop(text: str, min_repeats: int = 3, min_span: int = 40, max_period: int = 200) -> bool:
    """True when some unit repeats back to back at least `min_repeats` times over at least `min_span` chars
    (e.g. a sentence written three times in a row, or 40 identical characters): how small models loop."""
    codes = np.fromiter((ord(char) for char in text), dtype=np.int64, count=len(text))
    for period in range(1, min(max_period, len(codes) // 2) + 1):
        same = codes[:-period] == codes[period:]
        needed_run = max((min_repeats - 1) * period, min_span - period)
        if needed_run > len(same) or not same.any():
            continue
        padded = np.concatenate(([False], same, [False])).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        if int((edges[1::2] - edges[::2]).max()) >= needed_run:
            return True
    return False


def distinct_n(text: str, n: int = 4) -> float:
    """Share of distinct character n-grams among all n-grams (1.0: no repeat; low values: repetitive text)."""
    tokens = characters(text)
    grams = _ngrams(tokens, n)
    total = sum(grams.values())
    return len(grams) / total if total else 1.0


# --- loss split ---------------------------------------------------------------------------------------------


@dataclass
class SegmentLoss:
    """Summed negative log-likelihood (nats) and token count of one part of the assistant turn."""

    nll: float = 0.0
    tokens: int = 0

    def add(self, other: SegmentLoss) -> SegmentLoss:
        return SegmentLoss(self.nll + other.nll, self.tokens + other.tokens)

    @property
    def mean(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean) if self.tokens else float("nan")


def assistant_segments(
    input_ids: Sequence[int], assistant_start: int, think_close_id: int
) -> tuple[range, range]:
    """Token positions of the reasoning part (`<think>` … `</think>`) and of the answer part of the assistant
    turn that starts at `assistant_start` and ends the rendered conversation.

    The answer part runs from after `</think>` to the end: the answer, the end-of-turn token and what the
    chat template writes after it (Qwen3: a newline). These are the tokens training learns from
    (assistant_only_loss), so the two parts together give the trainer's loss. Without a `</think>` token the
    whole turn counts as answer.
    """
    ids = list(input_ids)
    try:
        close = ids.index(think_close_id, assistant_start) + 1
    except ValueError:
        close = assistant_start
    return range(assistant_start, close), range(close, len(ids))


def segment_losses(
    token_nll: Sequence[float], reasoning: range, answer: range
) -> tuple[SegmentLoss, SegmentLoss]:
    """Sum per-token NLLs over the two segments; token_nll[i] is the loss of predicting token i from i - 1."""
    return (
        SegmentLoss(float(sum(token_nll[i] for i in reasoning)), len(reasoning)),
        SegmentLoss(float(sum(token_nll[i] for i in answer)), len(answer)),
    )


# --- small summaries ----------------------------------------------------------------------------------------


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


def share(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return float(sum(bool(flag) for flag in flags) / len(flags)) if flags else float("nan")


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.median(values)) if values else float("nan")
