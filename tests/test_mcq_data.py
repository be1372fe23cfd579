"""`medsft data --kind mcq`: MCQ files -> prompt + gold rows, with row accounting, rejects and the evaluated
benchmarks kept out (planted reworded overlaps), on real XMedBench rows read from the shared folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsft import data
from medsft.decontamination import load_benchmark_index
from medsft.mcq import direct_conversation, load_questions, thinking_conversation
from tests.conftest import require_shared

DEV = "benchmarks/xmedbench_zh/dev_zh.json"
TEST = "benchmarks/xmedbench_zh/test_zh.json"

# Questions written for these tests, in no benchmark.
OWN_QUESTIONS = [
    {
        "question": "某社区卫生站为七十八名居民测量血压后，护士在登记表上应优先记录哪一项（示例题）？",
        "options": "(A) 测量时间与体位\n(B) 居民的职业\n(C) 居民的籍贯\n(D) 测量者的年龄",
        "answer": "(A)",
    },
    {
        "question": "一位虚构的病人在示例病例中服用了两种示例药物，下列哪些做法符合示例病例的用药记录要求？",
        "options": "(A) 记录剂量\n(B) 记录频次\n(C) 不记录\n(D) 记录给药途径",
        "answer": "(ABD)",
    },
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def reworded(row: dict) -> dict:
    """A benchmark question planted with new framing, other punctuation and its options in another order."""
    stem = row["question"].replace("，", ",").replace("。", "")
    options = row["options"].splitlines()[::-1]
    letters = "ABCDEFGHIJ"
    texts = [line.split(")", 1)[1].strip() for line in options]
    return {
        "question": f"请结合临床实际回答：{stem} （本题为练习题）",
        "options": "\n".join(f"({letters[i]}) {text}" for i, text in enumerate(texts)),
        "answer": "(A)",
    }


@pytest.fixture(scope="module")
def dev_rows() -> list[dict]:
    return json.loads(require_shared(DEV).read_text(encoding="utf-8"))


def test_real_questions_become_eval_prompts_with_gold_letters(tmp_path, dev_rows):
    source = write_jsonl(tmp_path / "mcq.jsonl", dev_rows[:40])
    out = tmp_path / "out"
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(out), "--name", "m"]
    assert data.main([*args, "--decontaminate", "none"]) == 0
    report = json.loads((out / "m" / "report.json").read_text(encoding="utf-8"))
    rows = read_jsonl(out / "m" / "train.jsonl") + read_jsonl(out / "m" / "val.jsonl")
    assert report["rows"] == {"read": 40, "converted": 40, "rejected": 0}
    assert report["splits"]["val"] == 4 and report["decontamination"] is None
    questions = {q.question: q for q in load_questions(source)}
    for row in rows:
        stem = next(text for text in questions if text in row["prompt"][-1]["content"])
        question = questions[stem]
        assert row["prompt"] == thinking_conversation(question)  # eval's own prompt
        assert row["gold"] == question.answer
        assert row["options"] == list(question.options.values())
        assert row["mode"] == "thinking"


def test_xmedbench_dev_questions_are_all_test_questions_and_kept_out(tmp_path, dev_rows):
    test_file = require_shared(TEST)
    source = write_jsonl(tmp_path / "mcq.jsonl", [*dev_rows[:40], *OWN_QUESTIONS])
    out = tmp_path / "out"
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(out), "--name", "m"]
    assert data.main([*args, "--decontaminate", str(test_file)]) == 0
    report = json.loads((out / "m" / "report.json").read_text(encoding="utf-8"))
    kept = read_jsonl(out / "m" / "train.jsonl") + read_jsonl(out / "m" / "val.jsonl")
    rejects = read_jsonl(out / "m" / "rejects.jsonl")
    assert report["rows"] == {"read": 42, "converted": 2, "rejected": 40}
    assert report["decontamination"]["benchmarks"] == [str(test_file)]
    # XMedBench's dev questions are test questions too (short stems such as `FDP` by their options)
    assert [entry["row"] for entry in rejects] == list(range(40))
    assert {entry["reason"] for entry in rejects} == {"benchmark_overlap"}
    assert all(entry["benchmark"].startswith(str(test_file)) for entry in rejects)
    assert sorted(row["gold"] for row in kept) == ["A", "ABD"]


def test_a_source_of_benchmark_questions_only_is_one_line_error(tmp_path, dev_rows):
    source = write_jsonl(tmp_path / "mcq.jsonl", dev_rows[:5])
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "m"]
    with pytest.raises(data.DataError, match="0 of 5 questions kept \\(benchmark_overlap=5\\)"):
        data.main([*args, "--decontaminate", str(require_shared(TEST))])


def test_planted_overlaps_bad_gold_and_duplicates_are_rejected_with_their_reason(tmp_path, dev_rows):
    require_shared(TEST)
    planted = [reworded(row) for row in dev_rows[:5]]
    bad = [
        {"question": "示例：缺少答案的题目，用来检查拒绝原因是否正确记录？", "options": "(A) 甲\n(B) 乙"},
        {
            "question": "示例：答案字母不在选项中的题目会被拒绝吗？",
            "options": "(A) 甲\n(B) 乙",
            "answer": "(E)",
        },
        {"question": "示例：选项字母不连续的题目会被拒绝吗？", "options": "(A) 甲\n(C) 丙", "answer": "(A)"},
    ]
    rows = [*OWN_QUESTIONS, *dev_rows[5:10], *planted, *bad, OWN_QUESTIONS[0]]
    source = write_jsonl(tmp_path / "mcq.jsonl", rows)
    out = tmp_path / "out"
    # the default: the XMedBench files that `medsft eval` reads
    assert data.main(["--kind", "mcq", "--src", str(source), "--out-dir", str(out), "--name", "m"]) == 0
    kept = read_jsonl(out / "m" / "train.jsonl") + read_jsonl(out / "m" / "val.jsonl")
    rejects = read_jsonl(out / "m" / "rejects.jsonl")
    by_row = {entry["row"]: entry["reason"] for entry in rejects}
    assert len(kept) == 2 and {row["gold"] for row in kept} == {"A", "ABD"}
    assert all(by_row[row] == "benchmark_overlap" for row in range(2, 12))  # verbatim and reworded
    assert [by_row[row] for row in (12, 13, 14)] == ["invalid_question"] * 3
    assert by_row[15] == "duplicate"
    assert len(kept) + len(rejects) == len(rows)
    # no evaluated question is a training prompt
    index = load_benchmark_index(["xmedbench"])
    assert all(index.match(row["prompt"][-1]["content"]) is None for row in kept)


def test_direct_mode_uses_evals_non_thinking_prompt(tmp_path):
    source = write_jsonl(tmp_path / "own.jsonl", OWN_QUESTIONS)
    out = tmp_path / "out"
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(out), "--name", "d"]
    assert data.main([*args, "--mcq-mode", "direct", "--decontaminate", "none", "--val-ratio", "0"]) == 0
    rows = read_jsonl(out / "d" / "train.jsonl")
    assert [row["prompt"] for row in rows] == [direct_conversation(q) for q in load_questions(source)]
    assert json.loads((out / "d" / "report.json").read_text())["decontamination"] is None


def test_strict_and_misused_flags_are_one_line_errors(tmp_path):
    source = write_jsonl(tmp_path / "own.jsonl", [*OWN_QUESTIONS, OWN_QUESTIONS[0]])
    out = tmp_path / "out"
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(out), "--decontaminate", "none"]
    with pytest.raises(data.DataError, match="--strict: 1 of 3 questions rejected \\(duplicate=1\\)"):
        data.main([*args, "--strict"])
    assert not (out / "own").exists()
    with pytest.raises(SystemExit):
        data.main([*args, "--think-field", "x"])


def test_a_control_token_in_a_question_or_option_is_rejected(tmp_path):
    forged = {"question": "示例：以下哪项正确？<|im_end|>", "options": "(A) 甲\n(B) 乙", "answer": "(A)"}
    option = {"question": "示例：以下哪项错误？", "options": "(A) 甲<|im_start|>\n(B) 乙", "answer": "(B)"}
    source = write_jsonl(tmp_path / "own.jsonl", [forged, option, *OWN_QUESTIONS])
    out = tmp_path / "out"
    args = [
        "--kind",
        "mcq",
        "--src",
        str(source),
        "--out-dir",
        str(out),
        "--name",
        "c",
        "--decontaminate",
        "none",
    ]
    assert data.main(args) == 0
    rejects = read_jsonl(out / "c" / "rejects.jsonl")
    reasons = [(entry["row"], entry["reason"]) for entry in rejects]
    assert reasons == [(0, "chat_token_in_text"), (1, "chat_token_in_text")]


def test_a_folder_of_c_eval_style_csv_files_is_read_as_eval_reads_it(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    header = "id,question,A,B,C,D,answer,explanation\n"
    rows = [f'0,"{OWN_QUESTIONS[0]["question"]}",测量时间与体位,居民的职业,居民的籍贯,测量者的年龄,A,示例\n']
    (folder / "community_health_val.csv").write_text(header + "".join(rows), encoding="utf-8")
    out = tmp_path / "out"
    args = ["--kind", "mcq", "--src", str(folder), "--out-dir", str(out), "--name", "csv"]
    assert data.main([*args, "--decontaminate", "none", "--val-ratio", "0"]) == 0
    [row] = read_jsonl(out / "csv" / "train.jsonl")
    assert row["gold"] == "A" and row["source"] == "community_health"
    assert row["options"] == ["测量时间与体位", "居民的职业", "居民的籍贯", "测量者的年龄"]
