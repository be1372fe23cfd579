"""The GRPO rewards on hand-checked Qwen3 outputs, as TRL passes them (conversational completions)."""

from __future__ import annotations

import functools

import pytest

from medsft.rewards import (
    RewardError,
    completion_text,
    correctness,
    format,
    length_guard,
    reward_functions,
)

OPTIONS = ["急性胰腺炎", "急性胆囊炎", "消化性溃疡穿孔", "急性阑尾炎", "肠梗阻"]

RIGHT = (
    "<think>\n患者饮酒后上腹痛向腰背部放射，血淀粉酶升高，首先考虑急性胰腺炎。\n</think>\n\n"
    "该患者最可能的诊断是急性胰腺炎。\n答案：A"
)
WRONG = "<think>\n上腹痛伴发热，墨菲征可疑阳性，考虑胆囊炎。\n</think>\n\n最可能的诊断为急性胆囊炎。\n答案：B"
CUT_OFF = "<think>\n患者饮酒后上腹痛，血淀粉酶升高，答案：A。再核对一下其他选项：B项胆囊炎"
NO_REASONING = "答案：A"
EMPTY_THINK = "<think>\n\n</think>\n\n答案：A"
SEVERAL_ANSWERS = (
    "<think>\n淀粉酶升高提示胰腺炎，但也要考虑穿孔。\n</think>\n\n答案：A\n也可能是穿孔。\n答案：C"
)
ONLY_IN_REASONING = "<think>\n血淀粉酶升高，答案：A。\n</think>\n\n综上，该患者需要进一步检查以明确诊断。"
HEDGE = "<think>\n两者都有可能。\n</think>\n\n答案为A或C"
NO_ANSWER_LINE = "<think>\n血淀粉酶升高，考虑胰腺炎。\n</think>\n\n最可能的诊断是急性胰腺炎，故选A。"
TWO_THINK_BLOCKS = "<think>\n胰腺炎。\n</think>\n\n<think>\n再想想。\n</think>\n\n答案：A"
MULTI_RIGHT = "<think>\n胰腺炎与穿孔均符合。\n</think>\n\n答案：AC"
MULTI_PARTIAL = "<think>\n胰腺炎符合。\n</think>\n\n答案：A"


def conversational(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def rewards(function, texts: list[str], gold: str = "A") -> list[float]:
    completions = [conversational(text) for text in texts]
    return function(
        completions=completions,
        gold=[gold] * len(texts),
        options=[OPTIONS] * len(texts),
        prompts=[None] * len(texts),
        trainer_state=None,
    )


def test_correctness_reads_the_answer_part_as_eval_does():
    texts = [RIGHT, WRONG, CUT_OFF, NO_REASONING, SEVERAL_ANSWERS, ONLY_IN_REASONING, HEDGE, NO_ANSWER_LINE]
    assert rewards(correctness, texts) == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_correctness_reads_a_restated_conclusion_as_eval_does():
    # no letter in the answer, which names the option the reasoning chose: eval reads it (grader rule 12)
    restated = "<think>\n淀粉酶升高，结合饮酒史，所以选A。\n</think>\n\n该患者最可能的诊断是急性胰腺炎。"
    assert rewards(correctness, [restated]) == [1.0]
    assert rewards(format, [restated]) == [0.0]  # but no final answer line


def test_correctness_needs_the_exact_set_for_several_answers():
    assert rewards(correctness, [MULTI_RIGHT, MULTI_PARTIAL, RIGHT], gold="AC") == [1.0, 0.0, 0.0]


def test_correctness_takes_plain_text_completions_too():
    assert correctness(completions=[RIGHT, WRONG], gold=["A", "A"], options=[OPTIONS, OPTIONS]) == [1.0, 0.0]


def test_format_wants_one_reasoning_block_then_one_final_answer_line():
    texts = [
        RIGHT,
        WRONG,
        CUT_OFF,
        NO_REASONING,
        EMPTY_THINK,
        SEVERAL_ANSWERS,
        ONLY_IN_REASONING,
        NO_ANSWER_LINE,
        TWO_THINK_BLOCKS,
    ]
    # a wrong answer is well formatted; format says nothing about correctness
    assert rewards(format, texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_reasoning_split_off_by_a_response_parser_is_put_back():
    message = {"role": "assistant", "reasoning_content": "淀粉酶升高。", "content": "答案：A"}
    assert completion_text([message]).startswith("<think>")
    assert format(completions=[[message]]) == [1.0]


def test_the_real_tokenizer_keeps_the_think_tags_when_trl_decodes(qwen3_tokenizer):
    # TRL decodes completions with skip_special_tokens=True: Qwen3's <think> tags must survive it
    ids = qwen3_tokenizer(RIGHT, add_special_tokens=False)["input_ids"]
    decoded = qwen3_tokenizer.decode(ids, skip_special_tokens=True)
    assert format(completions=[conversational(decoded)]) == [1.0]
    assert correctness(completions=[conversational(decoded)], gold=["A"], options=[OPTIONS]) == [1.0]


def test_length_guard_is_zero_until_the_buffer_then_falls_to_minus_one():
    guard = functools.partial(length_guard, max_tokens=100, buffer=20)
    ids = [[0] * n for n in (10, 80, 90, 100, 120)]
    assert guard(completions=[""] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_reward_functions_by_name_in_the_recipes_order():
    functions = reward_functions(["format", "correctness", "length_guard"], 256, 64)
    assert functions[0] is format and functions[1] is correctness
    assert functions[2].func is length_guard and functions[2].keywords == {"max_tokens": 256, "buffer": 64}
    with pytest.raises(RewardError, match="Unknown reward 'accuracy'"):
        reward_functions(["accuracy"], 256, 64)
    with pytest.raises(RewardError, match="length_guard_buffer"):
        reward_functions(["length_guard"], 256, 0)
