"""MCQ benchmark: loading the three layouts, stratified selection, likelihood scoring (letter extraction is
tested in test_answer_choice.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import require_shared

from medsft.errors import MedsftError
from medsft.jsonl import JsonlError
from medsft.mcq import (
    ANSWER_PREFIX,
    BenchmarkError,
    BenchmarkFormatError,
    Question,
    accuracy_table,
    letter_token_ids,
    likelihood_prompt,
    load_questions,
    next_token_logits,
    parse_options,
    score_by_likelihood,
    select_questions,
    thinking_conversation,
)

XMED_ROWS = [
    {
        "question": "一般供内服使用的制剂所使用的表面活性剂是",
        "options": "(A) 阳离子型.\n(B) 阴离子型.\n(C) 非离子型.\n(D) 两性离子型.\n(E) 皂类.",
        "answer": "(C)",
        "source": "cmb-single",
    },
    {
        "question": "属于上皮组织的是",
        "options": "(A) 表皮.\n(B) 真皮.\n(C) 黏膜上皮.\n(D) 肌层.\n(E) 腺上皮.",
        "answer": "(ACE)",
        "source": "cmexam",
    },
]


def test_load_xmedbench_json(tmp_path):
    path = tmp_path / "dev_zh.json"
    path.write_text(json.dumps(XMED_ROWS, ensure_ascii=False), encoding="utf-8")
    first, second = load_questions(path)
    assert first.options == {
        "A": "阳离子型.",
        "B": "阴离子型.",
        "C": "非离子型.",
        "D": "两性离子型.",
        "E": "皂类.",
    }
    assert (first.answer, first.source, first.multi) == ("C", "cmb-single", False)
    assert (second.answer, second.multi, second.index) == ("ACE", True, 1)


def test_load_cmmlu_csv(tmp_path):
    path = tmp_path / "clinical_knowledge.csv"
    path.write_text(
        ",Question,A,B,C,D,Answer\n0,成人正常心率是,40-60次/分,60-100次/分,100-120次/分,120-140次/分,B\n",
        encoding="utf-8",
    )
    (question,) = load_questions(path)
    assert question.options["B"] == "60-100次/分" and len(question.options) == 4
    assert (question.answer, question.source) == ("B", "clinical_knowledge")  # no source column: file name


def test_load_jsonl_with_columns(tmp_path):
    path = tmp_path / "mine.jsonl"
    row = {
        "stem": "维生素C缺乏可引起",
        "choices": ["佝偻病", "坏血病", "夜盲症"],
        "label": "B",
        "subject": "nutrition",
    }
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    columns = {"question": "stem", "options": "choices", "answer": "label", "source": "subject"}
    (question,) = load_questions(path, columns)
    assert question.options == {"A": "佝偻病", "B": "坏血病", "C": "夜盲症"}
    assert (question.answer, question.source) == ("B", "nutrition")


def test_bad_rows_are_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{**XMED_ROWS[0], "answer": "(F)"}], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match="row 0"):
        load_questions(path)
    with pytest.raises(BenchmarkFormatError):
        parse_options("(A) 一\n(C) 三")  # a letter missing
    with pytest.raises(BenchmarkFormatError, match="unknown benchmark format"):
        (tmp_path / "x.txt").write_text("x")
        load_questions(tmp_path / "x.txt")


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        load_questions(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match="broken.json"):
        load_questions(tmp_path / "broken.json")
    (tmp_path / "broken.jsonl").write_text(json.dumps(XMED_ROWS[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(JsonlError, match="line 2"):
        load_questions(tmp_path / "broken.jsonl")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match="row 0: expected an object"):
        load_questions(tmp_path / "list.jsonl")
    assert issubclass(BenchmarkError, MedsftError) and issubclass(JsonlError, MedsftError)


def test_letters_that_are_not_one_token_are_refused():
    def splitting_tokenizer(text, add_special_tokens=False):
        return {"input_ids": [1, 2]}

    with pytest.raises(BenchmarkError, match="--mcq-mode think"):
        letter_token_ids(splitting_tokenizer, "AB")


def _questions(counts: dict[str, int]) -> list[Question]:
    options = {"A": "a", "B": "b", "C": "c", "D": "d"}
    questions = []
    for source, count in counts.items():
        questions += [
            Question(f"{source}{i}", options, "A", source, len(questions) + i) for i in range(count)
        ]
    return questions


def test_select_is_stratified_seeded_and_in_file_order():
    questions = _questions({"medqa-mcmle": 173, "cmexam": 98, "cmb-single": 90, "cmmlu-medical": 76})
    chosen = select_questions(questions, limit=20, seed=1)
    assert len(chosen) == 20
    assert Counter(q.source for q in chosen) == {
        "medqa-mcmle": 8,
        "cmexam": 5,
        "cmb-single": 4,
        "cmmlu-medical": 3,
    }
    assert chosen == select_questions(questions, limit=20, seed=1)
    assert chosen != select_questions(questions, limit=20, seed=2)
    assert [q.index for q in chosen] == sorted(q.index for q in chosen)
    # a tiny limit still reaches every source
    assert {q.source for q in select_questions(questions, limit=4, seed=0)} == {
        "medqa-mcmle", "cmexam", "cmb-single", "cmmlu-medical"
    }  # fmt: skip
    subset = select_questions(questions, subsets=["cmexam"], limit=10, seed=0)
    assert len(subset) == 10 and {q.source for q in subset} == {"cmexam"}
    assert len(select_questions(questions, subsets=["cmexam", "cmb-single"])) == 188
    with pytest.raises(BenchmarkFormatError, match="unknown subset"):
        select_questions(questions, subsets=["mmlu"])


def test_real_benchmark_files_load():
    dev = load_questions(require_shared("benchmarks/xmedbench_zh/dev_zh.json"))
    assert len(dev) == 437
    assert Counter(q.source for q in dev) == {
        "medqa-mcmle": 173,
        "cmexam": 98,
        "cmb-single": 90,
        "cmmlu-medical": 76,
    }
    assert sum(q.multi for q in dev) == 4
    assert all(q.answer in "".join(q.options) or q.multi for q in dev)


def test_prompts_use_the_chat_template(qwen3_tokenizer):
    question = load_questions_from_rows(XMED_ROWS)[0]
    conversation = thinking_conversation(question)
    assert [m["role"] for m in conversation] == ["system", "user"]
    assert "(C) 非离子型." in conversation[1]["content"] and "答案：" in conversation[1]["content"]
    prompt = likelihood_prompt(qwen3_tokenizer, question)
    no_think = qwen3_tokenizer.apply_chat_template(
        [
            {"role": "system", "content": conversation[0]["content"]},
            {"role": "user", "content": prompt_user(prompt)},
        ],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert prompt == no_think + ANSWER_PREFIX
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n答案：")


def load_questions_from_rows(rows):
    return [
        Question(
            r["question"],
            parse_options(r["options"]),
            "".join(c for c in r["answer"] if c.isalpha()),
            r["source"],
        )
        for r in rows
    ]


def prompt_user(prompt: str) -> str:
    return prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]


def test_next_token_logits_batched_equals_single(tiny_lm):
    model, tokenizer = tiny_lm
    prompts = ["<|im_start|>user\n短<|im_end|>\n", "<|im_start|>user\n一个长得多的问题，需要填充<|im_end|>\n"]
    batched = next_token_logits(model, tokenizer, prompts, batch_size=2)
    for prompt, logits in zip(prompts, batched, strict=True):
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected = model(input_ids=ids).logits[0, -1].float()
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_score_by_likelihood_picks_the_best_letter_and_excludes_multi(tiny_lm):
    model, tokenizer = tiny_lm
    questions = load_questions_from_rows(XMED_ROWS)
    single, multi = score_by_likelihood(model, tokenizer, questions, batch_size=2)
    assert multi.predicted is None and not multi.scored
    ids = tokenizer(likelihood_prompt(tokenizer, questions[0]), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        logprobs = torch.log_softmax(model(**ids).logits[0, -1].float(), dim=-1)
    letter_ids = letter_token_ids(tokenizer, "ABCDE")
    expected = max("ABCDE", key=lambda letter: float(logprobs[letter_ids[letter]]))
    assert single.predicted == expected
    assert set(single.letter_logprobs) == set("ABCDE")
    assert single.letter_logprobs[expected] == pytest.approx(float(logprobs[letter_ids[expected]]), abs=1e-4)


def test_accuracy_table_counts_per_source():
    records = [
        {"source": "cmexam", "correct": True, "parsed": True},
        {"source": "cmexam", "correct": False, "parsed": False},
        {"source": "cmb-single", "correct": True},
        {"source": "cmb-single", "correct": False, "scored": False},  # excluded (multi-answer, likelihood)
    ]
    table = accuracy_table(records)
    assert table["cmexam"] == {
        "questions": 2, "scored": 2, "excluded": 0, "correct": 1, "unparseable": 1, "accuracy": 0.5
    }  # fmt: skip
    assert table["cmb-single"]["accuracy"] == 1.0 and table["cmb-single"]["excluded"] == 1
    assert table["overall"]["accuracy"] == pytest.approx(2 / 3) and table["overall"]["questions"] == 4
