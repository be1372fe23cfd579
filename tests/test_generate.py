"""medsft.generate: chat template prompts, batched == one-at-a-time greedy, reasoning split, streaming."""

from __future__ import annotations

import threading

import pytest
from tiny_chat_models import (
    THINKING_REPLY_ANSWER,
    THINKING_REPLY_REASONING,
    diverse_model_dir,
    thinking_model_dir,
)

from medsft.generate import GenerationSettings, load_generator, split_reasoning

QUESTIONS = [
    "你好",
    "我最近总是头痛，晚上睡不好，白天也很累，这是什么原因？应该去看哪个科？",
    "高血压吃什么药",
    "What should I do about a persistent cough that has lasted three weeks?",
    "糖尿病",
]


@pytest.fixture(scope="module")
def diverse_generator(tmp_path_factory, qwen3_tokenizer):
    return load_generator(diverse_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer))


@pytest.fixture(scope="module")
def thinking_generator(tmp_path_factory, qwen3_tokenizer):
    return load_generator(thinking_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer))


def test_split_reasoning_cases():
    assert split_reasoning("<think>\nstep 1\n</think>\n\nanswer") == ("step 1", "answer", True)
    assert split_reasoning("\n<think>a</think>b") == ("a", "b", True)
    # streaming: the think block is still open
    assert split_reasoning("<think>\nhalf a tho") == ("half a tho", "", False)
    assert split_reasoning("<think>\ndone\n</think>\n\n") == ("done", "", False)  # answer not started yet
    # no thinking at all (thinking disabled, or a model that skipped it)
    assert split_reasoning("just an answer") == ("", "just an answer", False)
    # opening tag missing (some templates put it in the prompt)
    assert split_reasoning("thought\n</think>\n\nanswer") == ("thought", "answer", False)
    # two think blocks / stray tags are not well formed
    assert split_reasoning("<think>a</think>b<think>c</think>d")[2] is False
    assert split_reasoning("<think>a<think>b</think>c")[2] is False
    assert split_reasoning("") == ("", "", False)


def test_build_prompt_uses_chat_template(diverse_generator):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    thinking = diverse_generator.build_prompt(messages, enable_thinking=True)
    plain = diverse_generator.build_prompt(messages, enable_thinking=False)
    assert (
        thinking == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert plain == thinking + "<think>\n\n</think>\n\n"
    # earlier reasoning is dropped by Qwen3's template
    history = messages + [
        {"role": "assistant", "content": "<think>\nold reasoning\n</think>\n\nA1"},
        {"role": "user", "content": "Q2"},
    ]
    assert "old reasoning" not in diverse_generator.build_prompt(history)


def test_batched_greedy_equals_one_at_a_time(diverse_generator):
    conversations = [[{"role": "user", "content": question}] for question in QUESTIONS]
    settings = GenerationSettings.greedy(max_new_tokens=16)
    batched = diverse_generator.generate(conversations, settings, batch_size=3)
    single = [diverse_generator.generate([conversation], settings)[0] for conversation in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert len({g.text for g in batched}) == len(QUESTIONS)  # outputs really depend on the prompt
    assert diverse_generator.generate([], settings) == []
    for generation in batched:
        assert generation.truncated  # a random model does not stop by itself within 16 tokens
        assert generation.reasoning_tokens + generation.answer_tokens == 16


def test_generate_splits_reasoning_and_counts_tokens(thinking_generator):
    settings = GenerationSettings.greedy(max_new_tokens=64)
    [generation] = thinking_generator.generate([[{"role": "user", "content": "肚子痛怎么回事"}]], settings)
    assert generation.reasoning == THINKING_REPLY_REASONING
    assert generation.answer == THINKING_REPLY_ANSWER
    assert generation.well_formed and not generation.truncated
    tokenizer = thinking_generator.tokenizer
    think_block = f"<think>\n{THINKING_REPLY_REASONING}\n</think>"
    assert generation.reasoning_tokens == len(tokenizer(think_block, add_special_tokens=False)["input_ids"])
    answer_ids = tokenizer(f"\n\n{THINKING_REPLY_ANSWER}", add_special_tokens=False)["input_ids"]
    assert generation.answer_tokens == len(answer_ids)
    [cut] = thinking_generator.generate(
        [[{"role": "user", "content": "你好"}]], settings.greedy(max_new_tokens=4)
    )
    assert cut.truncated and not cut.well_formed and cut.answer == "" and cut.reasoning_tokens == 4


def test_sampling_with_seed_is_reproducible(diverse_generator):
    conversations = [[{"role": "user", "content": question}] for question in QUESTIONS[:2]]
    settings = GenerationSettings(max_new_tokens=8, seed=123)
    first = diverse_generator.generate(conversations, settings)
    second = diverse_generator.generate(conversations, settings)
    assert [g.text for g in first] == [g.text for g in second]


def test_stream_grows_and_splits_while_streaming(thinking_generator):
    messages = [{"role": "user", "content": "头痛怎么办？"}]
    updates = list(thinking_generator.stream(messages, GenerationSettings.greedy(max_new_tokens=64)))
    assert len(updates) > 5
    assert [done for *_, done in updates] == [False] * (len(updates) - 1) + [True]
    combined = [reasoning + "|" + answer for reasoning, answer, _ in updates]
    assert all(len(a) <= len(b) for a, b in zip(combined, combined[1:], strict=False))
    # reasoning is complete before the answer starts, and both are split while streaming
    assert any(reasoning and not answer for reasoning, answer, _ in updates)
    partial_answers = [answer for _, answer, done in updates if answer and not done]
    assert partial_answers and partial_answers[0] != THINKING_REPLY_ANSWER
    assert updates[-1][:2] == (THINKING_REPLY_REASONING, THINKING_REPLY_ANSWER)


def test_stream_stops_on_event(thinking_generator):
    stop = threading.Event()
    updates = []
    for update in thinking_generator.stream(
        [{"role": "user", "content": "你好"}], GenerationSettings.greedy(max_new_tokens=500), stop
    ):
        updates.append(update)
        if len(updates) == 3:
            stop.set()
    assert updates[-1][2] is True
    assert len(updates) < 10  # stopped right away, not after the memorised reply or 500 tokens


def test_stream_closed_early_stops_the_model_thread(thinking_generator):
    before = threading.active_count()
    stream = thinking_generator.stream(
        [{"role": "user", "content": "你好"}], GenerationSettings(max_new_tokens=500)
    )
    next(stream)
    stream.close()  # what a disconnected client does
    assert threading.active_count() == before


def test_result_of_no_thinking_output(thinking_generator):
    tokenizer = thinking_generator.tokenizer
    ids = tokenizer("plain answer<|im_end|><|endoftext|>", add_special_tokens=False)["input_ids"]
    plain = thinking_generator._result(ids, enable_thinking=False)
    assert (plain.reasoning, plain.answer, plain.well_formed, plain.truncated) == (
        "",
        "plain answer",
        True,
        False,
    )
    assert plain.reasoning_tokens == 0 and plain.answer_tokens == len(ids) - 2
    # the same text is not well formed when a think block was expected
    assert thinking_generator._result(ids, enable_thinking=True).well_formed is False


def test_unknown_backend_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="backend"):
        load_generator(tiny_model_dir, backend="tgi")
