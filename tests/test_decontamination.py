"""Benchmark decontamination: reworded planted overlaps match, near-misses do not, and the real training rows
match no real benchmark question."""

from __future__ import annotations

import json

import pytest
from conftest import require_shared

from medsft.decontamination import (
    BenchmarkIndex,
    BenchmarkQuestion,
    DecontaminationError,
    load_benchmark_index,
    normalise,
)

STEMS = [
    "患者男，45岁，饮酒后上腹部剧痛并向腰背部放射，血淀粉酶显著升高，最可能的诊断是",
    "治疗青霉素过敏性休克首选的药物是",
    "下列哪项不是缺铁性贫血的临床表现",
    "胆囊的主要功能是",  # short: 8 characters, indexed
    "属于",  # too short to say anything: not indexed
]


@pytest.fixture(scope="module")
def index() -> BenchmarkIndex:
    return BenchmarkIndex(BenchmarkQuestion("planted", stem, i) for i, stem in enumerate(STEMS))


def test_normalise_drops_punctuation_whitespace_and_width():
    assert normalise(" 患者男，45 岁。\n（Ａ）Ｂ ") == "患者男45岁ab"


@pytest.mark.parametrize(
    "question",
    [
        STEMS[0],
        # punctuation and whitespace changed, full-width digits
        "患者 男; 45岁 —— 饮酒后，上腹部剧痛 并向腰背部放射!! 血淀粉酶显著升高。最可能的诊断是？",
        # embedded in a longer question, the options listed in another order
        "老师，这道题怎么做：患者男，４５岁，饮酒后上腹部剧痛并向腰背部放射，血淀粉酶显著升高，最可能的诊断是"
        "（A）急性心肌梗死（B）急性胆囊炎（C）急性胰腺炎（D）消化性溃疡穿孔？请详细解释。",
        # a few characters changed
        "男性患者，45岁，饮酒后上腹部剧痛并向腰背部放射，血淀粉酶明显升高，最可能的诊断是什么",
    ],
)
def test_reworded_overlaps_match(index, question):
    overlap = index.match(question)
    assert overlap is not None and overlap.question.text == STEMS[0]
    assert overlap.share >= index.threshold
    assert "planted question 0" in overlap.describe()


@pytest.mark.parametrize(
    "question",
    [
        "青霉素过敏性休克首选的药物是？ A.肾上腺素 B.异丙嗪",  # short stem, reworded: still found
        "请问：治疗青霉素过敏性休克，首选的药物是什么呢？",
    ],
)
def test_short_stems_match_when_whole(index, question):
    overlap = index.match(question)
    assert overlap is not None and overlap.question.text == STEMS[1]


@pytest.mark.parametrize(
    "question",
    [
        "医生，我最近在学习遗传学，想了解一下DNA的主要功能是什么？",  # shares 的主要功能是 with a stem
        "患者女，30岁，饭后右上腹痛，墨菲征阳性，最可能的诊断是什么？",  # same template, another case
        "缺铁性贫血应该怎么补铁？吃什么食物比较好？",  # same disease, another question
        "青霉素皮试阴性后还会过敏吗？",
        "属于哪一类药物？",  # contains a stem too short to be indexed
    ],
)
def test_near_misses_do_not_match(index, question):
    assert index.match(question) is None


def test_index_leaves_out_short_stems(index):
    assert len(index) == 4 and index.too_short == 1


def test_short_stems_with_their_options_match_a_question_given_with_the_same_options():
    index = BenchmarkIndex(
        [BenchmarkQuestion("planted", "FDP", 0, ("抑制纤维蛋白多聚体的形成.", "水解纤维蛋白原."))]
    )
    assert len(index) == 0 and index.too_short == 1
    reworded = "请回答：FDP的作用是 （练习题）"
    overlap = index.match(reworded, ["水解纤维蛋白原", "抑制纤维蛋白多聚体的形成"])  # other order, no dots
    assert overlap is not None and overlap.question.text == "FDP" and overlap.share == 1.0
    assert index.match(reworded) is None  # without options a short stem says nothing
    assert (
        index.match(reworded, ["水解纤维蛋白原", "激活纤溶酶原"]) is None
    )  # other options: another question
    assert index.match("TNF的作用是", ["水解纤维蛋白原", "抑制纤维蛋白多聚体的形成"]) is None


def test_benchmark_files_and_unknown_names(tmp_path):
    rows = [{"question": STEMS[0], "options": "(A) 甲\n(B) 乙", "answer": "(A)"}]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    index = load_benchmark_index([str(tmp_path / "mine.jsonl")])
    assert index.match("题目：" + STEMS[0]).question.benchmark.endswith("mine.jsonl:mine")
    with pytest.raises(DecontaminationError, match="Unknown benchmark 'mmlu'"):
        load_benchmark_index(["mmlu"])
    with pytest.raises(DecontaminationError, match="matches no file"):
        load_benchmark_index([str(tmp_path / "missing*.json")])


def test_real_rows_match_no_real_benchmark_question(real_val_rows):
    """The measured false-positive rate (docs/data.md): 0 of the 241 real rows against all 8,759 + 437
    XMedBench questions; and each benchmark question planted in a row is found."""
    require_shared("benchmarks/xmedbench_zh/test_zh.json")
    index = load_benchmark_index(["xmedbench"])
    questions = [
        json.loads(line)["question"] for line in real_val_rows.read_text(encoding="utf-8").splitlines()
    ]
    assert len(questions) == 241
    assert [q for q in questions if index.match(q)] == []
    benchmark = json.loads(require_shared("benchmarks/xmedbench_zh/test_zh.json").read_text(encoding="utf-8"))
    planted = [row for row in benchmark[::500] if len(normalise(row["question"])) >= 8]
    for row in planted:
        found = index.match(f"请回答：{row['question']}\n{row['options']}")
        assert found is not None and normalise(found.question.text) == normalise(row["question"])
    cmexam = load_benchmark_index(["cmexam"])
    assert {q.benchmark for q in cmexam.questions} == {"xmedbench/cmexam"}
