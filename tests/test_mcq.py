"""MCQ benchmark: loading the layouts (single files, CMMLU / C-Eval folders of subject CSVs), stratified
selection, likelihood scoring, accuracy tables with their uncertainty (letter extraction is tested in
test_answer_choice.py, the statistics themselves in test_significance.py)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import require_shared

from medsft.errors import MedsftError
from medsft.jsonl import JsonlError
from medsft.mcq import (
    ANSWER_LINE_REQUEST,
    ANSWER_PREFIX,
    DIRECT_REQUEST,
    THINKING_REQUEST,
    BenchmarkError,
    BenchmarkFormatError,
    Question,
    accuracy_table,
    benchmark_files,
    describe_formats,
    letter_token_ids,
    likelihood_prompt,
    load_benchmark,
    load_questions,
    macro_average,
    next_token_logits,
    paired_comparison,
    parse_options,
    score_by_likelihood,
    select_questions,
    subject_name,
    thinking_conversation,
)
from medsft.significance import mcnemar, wilson_interval

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


# Made-up questions in the layouts CMMLU and C-Eval ship (one CSV per subject).
CMMLU_SUBJECTS = {
    "anatomy": [
        ("人体最大的器官是", ("心脏", "皮肤", "肝脏", "肺"), "B"),
        ("成人骨骼的数目约为", ("106", "156", "206", "256"), "C"),
        ("膝关节属于", ("滑膜关节", "纤维连结", "软骨连结", "骨性结合"), "A"),
    ],
    "clinical_knowledge": [
        ("成人正常静息心率是", ("40-60次/分", "60-100次/分", "100-120次/分", "120-140次/分"), "B"),
        ("测量血压时袖带应与哪里平齐", ("心脏", "肩部", "腰部", "膝部"), "A"),
    ],
    "virology": [
        ("乙型肝炎病毒的核酸类型是", ("单链RNA", "双链RNA", "部分双链DNA", "单链DNA"), "C"),
        ("流感病毒属于", ("正黏病毒科", "副黏病毒科", "疱疹病毒科", "逆转录病毒科"), "A"),
        ("狂犬病毒主要经何途径传播", ("呼吸道", "动物咬伤", "消化道", "输血"), "B"),
        ("HIV主要侵犯的细胞是", ("CD8+T细胞", "B细胞", "CD4+T细胞", "红细胞"), "C"),
    ],
}


def write_cmmlu_folder(folder: Path) -> Path:
    """CMMLU's data/test/ layout: <subject>.csv with an unnamed index column, Question, A-D, Answer."""
    folder.mkdir(parents=True, exist_ok=True)
    for subject, rows in CMMLU_SUBJECTS.items():
        lines = [",Question,A,B,C,D,Answer"]
        lines += [
            f"{i},{question},{','.join(options)},{answer}"
            for i, (question, options, answer) in enumerate(rows)
        ]
        (folder / f"{subject}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_ceval_folders(root: Path) -> Path:
    """C-Eval's layout: val/<subject>_val.csv with answers and explanations, test/<subject>_test.csv
    without answers."""
    for split in ("val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    (root / "val" / "physician_val.csv").write_text(
        "id,question,A,B,C,D,answer,explanation\n"
        '0,缺铁性贫血的典型血象是,小细胞低色素,大细胞,正细胞,"溶血性, 网织红细胞增多",A,'
        '"1. 铁缺乏, 血红蛋白合成减少"\n'
        "1,治疗室颤首选,胺碘酮,电除颤,利多卡因,阿托品,B,\n",
        encoding="utf-8",
    )
    (root / "val" / "basic_medicine_val.csv").write_text(
        "id,question,A,B,C,D,answer,explanation\n0,胰岛素由哪种细胞分泌,α细胞,β细胞,δ细胞,PP细胞,B,\n",
        encoding="utf-8",
    )
    (root / "test" / "physician_test.csv").write_text(
        "id,question,A,B,C,D\n0,心肌梗死最常见的部位是,左心室前壁,右心室,心房,室间隔后部\n",
        encoding="utf-8",
    )
    return root


def test_cmmlu_folder_each_file_a_subject(tmp_path):
    folder = write_cmmlu_folder(tmp_path / "cmmlu" / "data" / "test")
    files = benchmark_files([folder])
    assert [f.name for f in files] == ["anatomy.csv", "clinical_knowledge.csv", "virology.csv"]
    questions = load_benchmark(files)
    assert Counter(q.source for q in questions) == {"anatomy": 3, "clinical_knowledge": 2, "virology": 4}
    assert [q.index for q in questions] == list(range(9))  # one index per question across the files
    assert [q.answer for q in questions if q.source == "virology"] == ["C", "A", "B", "C"]
    assert questions[0].options == {"A": "心脏", "B": "皮肤", "C": "肝脏", "D": "肺"}
    # a subset of subjects and a sample stratified by subject work on the folder as on one file
    assert {q.source for q in select_questions(questions, ["anatomy", "virology"])} == {"anatomy", "virology"}
    assert Counter(q.source for q in select_questions(questions, limit=3, seed=0)) == {
        "anatomy": 1, "clinical_knowledge": 1, "virology": 1
    }  # fmt: skip


def test_files_folders_and_glob_patterns(tmp_path):
    folder = write_cmmlu_folder(tmp_path / "test")
    (folder / "README.md").write_text("not a benchmark", encoding="utf-8")
    by_pattern = benchmark_files([str(folder / "[av]*.csv")])
    assert [f.name for f in by_pattern] == ["anatomy.csv", "virology.csv"]
    named = benchmark_files([folder / "virology.csv", folder / "anatomy.csv", folder / "virology.csv"])
    assert [f.name for f in named] == ["virology.csv", "anatomy.csv"]  # order kept, duplicates once
    assert len(benchmark_files([folder])) == 3  # README.md is not a benchmark file
    with pytest.raises(BenchmarkError, match="matches no file"):
        benchmark_files([str(folder / "*.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="has no .csv, .json, .jsonl files"):
        benchmark_files([tmp_path / "empty"])
    with pytest.raises(BenchmarkError, match="not found"):
        benchmark_files([tmp_path / "nope.csv"])


def test_ceval_val_loads_and_test_is_refused_once(tmp_path):
    root = write_ceval_folders(tmp_path / "ceval")
    questions = load_benchmark(benchmark_files([root / "val"]))
    assert [(q.source, q.answer) for q in questions] == [
        ("basic_medicine", "B"), ("physician", "A"), ("physician", "B")
    ]  # fmt: skip
    assert questions[1].options["D"] == "溶血性, 网织红细胞增多"  # quoted commas; explanation ignored
    assert subject_name(Path("val/clinical_medicine_val.csv")) == "clinical_medicine"
    with pytest.raises(BenchmarkFormatError) as refused:
        load_benchmark(benchmark_files([root / "test"]))
    message = str(refused.value)
    assert "physician_test.csv has no answers" in message and "C-Eval" in message and "val/" in message
    assert message.count("row") == 0  # one message about the file, not one per row
    # an answer column whose cells are all empty is refused the same way
    (tmp_path / "blank.csv").write_text("question,A,B,answer\n问,甲,乙,\n问二,甲,乙, \n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match="'answer' column is empty"):
        load_questions(tmp_path / "blank.csv")
    # one missing answer among answered rows: that row is skipped, with its reason
    (tmp_path / "gap.csv").write_text("question,A,B,answer\n问,甲,乙,A\n问二,甲,乙,\n", encoding="utf-8")
    skipped = []
    (question,) = load_questions(tmp_path / "gap.csv", skipped=skipped)
    assert [(row.row, row.reason) for row in skipped] == [(1, "answer is empty")]


def test_one_subject_from_two_files_is_refused(tmp_path):
    root = write_ceval_folders(tmp_path / "ceval")
    (root / "dev").mkdir()
    (root / "dev" / "physician_dev.csv").write_text(
        (root / "val" / "physician_val.csv").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(BenchmarkFormatError, match="both subject 'physician'"):
        load_benchmark(benchmark_files([root / "val", root / "dev"]))


def test_formats_are_described_with_their_columns():
    text = describe_formats()
    for words in (
        "XMedBench",
        'question, options ("(A) …\\n(B) …"), answer',
        "CMMLU",
        "Question, A, B, C, D, Answer",
        "C-Eval",
        "id, question, A, B, C, D, answer, explanation",
        "test/ files have no answers",
        "--mcq-columns",
    ):
        assert words in text, words


def test_bad_rows_are_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{**XMED_ROWS[0], "answer": "(F)"}], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"bad.json, row 0: answer '\(F\)'") as error:
        load_questions(path)
    assert str(error.value).count("row 0") == 1
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
    skipped = []  # a bad line is one skipped row (tests/test_input_reliability.py), not a failed file
    (question,) = load_questions(tmp_path / "broken.jsonl", skipped=skipped)
    assert [(row.row, "line 2" in row.reason) for row in skipped] == [(1, True)]
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
    # both modes end their question with the request for one final answer line
    assert conversation[1]["content"].endswith(THINKING_REQUEST) and THINKING_REQUEST.endswith(
        ANSWER_LINE_REQUEST
    )
    assert prompt_user(prompt).endswith(DIRECT_REQUEST) and DIRECT_REQUEST.endswith(ANSWER_LINE_REQUEST)
    assert (
        "最后一行" in ANSWER_LINE_REQUEST
        and "答案：X" in ANSWER_LINE_REQUEST
        and "答案：AC" in ANSWER_LINE_REQUEST
    )


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
    expected = {letter: float(logprobs[letter_ids[letter]]) for letter in "ABCDE"}
    assert single.letter_logprobs == pytest.approx(expected, abs=1e-4)
    # Batched (padded) and single passes differ in the last bits: the pick is a best letter up to that.
    assert expected[single.predicted] >= max(expected.values()) - 1e-4


def _record(source, gold, predicted, options=4, index=0, **extra):
    return {
        "index": index,
        "source": source,
        "gold": gold,
        "predicted": predicted,
        "correct": predicted == gold,
        "options": dict.fromkeys("ABCDEFGHIJ"[:options], "…"),
        **extra,
    }


def test_accuracy_table_with_intervals_chance_and_distributions():
    # s1: 8 four-option questions, gold A five times; the model always answers A
    s1 = [_record("s1", gold, "A") for gold in "AAAABCDA"]
    # s2: 4 five-option questions; one answer unparseable
    s2 = [
        _record("s2", "B", "B", 5),
        _record("s2", "C", "C", 5),
        _record("s2", "D", None, 5, parsed=False),
        _record("s2", "E", "A", 5),
    ]
    excluded = _record("s2", "AC", None, 5, scored=False)  # a multi-answer question in likelihood mode
    table = accuracy_table(s1 + s2 + [excluded])
    first = table["s1"]
    assert (first["questions"], first["scored"], first["correct"], first["accuracy"]) == (8, 8, 5, 0.625)
    assert first["ci95"] == list(wilson_interval(5, 8))
    # always giving the most frequent gold letter scores 5/8, above uniform guessing (1/4)
    assert first["chance"] == {"uniform": 0.25, "majority": 0.625, "majority_answer": "A", "level": 0.625}
    assert first["above_chance"] is False  # its accuracy is exactly the chance level
    assert first["predicted"] == {"A": 8} and first["gold"] == {"A": 5, "B": 1, "C": 1, "D": 1}
    assert first["dominant"] == {"answer": "A", "share": 1.0}
    second = table["s2"]
    assert (second["questions"], second["scored"], second["excluded"], second["unparseable"]) == (5, 4, 1, 1)
    assert second["accuracy"] == 0.5 and second["dominant"] is None
    assert second["chance"]["level"] == 0.25 and second["chance"]["uniform"] == pytest.approx(0.2)
    assert second["predicted"] == {"A": 1, "B": 1, "C": 1, "unparseable": 1}
    overall = table["overall"]  # pooled: every scored question counts once
    assert (overall["correct"], overall["scored"]) == (7, 12) and overall["ci95"] == list(
        wilson_interval(7, 12)
    )
    assert overall["chance"]["majority"] == pytest.approx(5 / 12)  # gold A: 5 of the 12 scored questions
    macro = macro_average(s1 + s2 + [excluded])  # every source counts once
    assert macro == {
        "accuracy": pytest.approx((0.625 + 0.5) / 2),
        "sources": 2,
        "chance_level": pytest.approx((0.625 + 0.25) / 2),
    }
    assert macro_average([excluded]) is None


def test_a_clear_gain_is_above_chance_and_a_nothing_source_is_not():
    strong = [_record("s", "ABCD"[i % 4], "ABCD"[i % 4]) for i in range(40)]
    row = accuracy_table(strong)["s"]
    assert row["accuracy"] == 1.0 and row["above_chance"] is True and row["dominant"] is None
    assert math.isnan(accuracy_table([_record("s", "A", None, scored=False)])["s"]["accuracy"])


def test_paired_comparison_matches_questions_by_index():
    rng = random.Random(0)
    base, tuned = [], []
    # 30 questions of "big": the tuned model alone is right on 12, the base alone on 1, both on 10
    for i in range(30):
        base_right, tuned_right = (i < 11, 1 <= i < 23)
        base.append(_record("big", "A", "A" if base_right else "B", index=i))
        tuned.append(_record("big", "A", "A" if tuned_right else "B", index=i))
    # 6 of "same": both models answer alike
    for i in range(30, 36):
        base.append(_record("same", "A", "AB"[i % 2], index=i))
        tuned.append(_record("same", "A", "AB"[i % 2], index=i))
    tuned.append(_record("same", "AC", None, index=36, scored=False))  # excluded: not paired
    rng.shuffle(tuned)
    result = paired_comparison(base, tuned)
    big = result["big"]
    expected = mcnemar([r["correct"] for r in base[:30]], [i >= 1 and i < 23 for i in range(30)])
    assert (big["pairs"], big["base_only"], big["tuned_only"]) == (30, 1, 12)
    assert big["difference"] == pytest.approx(11 / 30) and big["p_value"] == pytest.approx(expected.p_value)
    assert big["method"] == "exact binomial" and big["p_value"] == pytest.approx(2 * 14 / 2**13)
    assert big["beyond_noise"] is True
    assert result["same"]["p_value"] == 1.0 and result["same"]["beyond_noise"] is False
    assert result["overall"]["pairs"] == 36 and result["overall"]["tuned_only"] == 12
    assert paired_comparison(base, []) == {}
