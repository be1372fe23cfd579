"""`medsft data`: exact rendering with the real Qwen3 tokenizer, all real rows, each reject class, splits."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from medsft import cli, conversion, data, sources
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN, special_token_ids
from medsft.conversion import DataOptions, convert_row
from medsft.data import DataError, prepare
from medsft.paths import bundled_tokenizer_dir, sample_data_file

SAMPLE_DATA = sample_data_file()

REAL_VAL_SHA256 = "21b5be3d16fe423bdb114513c0616608af38c22117273474b51ed1564f124190"
OUTPUT_FILES = ("train.jsonl", "val.jsonl", "rejects.jsonl", "report.json")


def row(
    question: str = "头痛怎么办？", think: str = "先分析原因。", answer: str = "多休息。", **extra
) -> dict:
    return {"question": question, "think": think, "answer": answer, **extra}


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows may be dicts (dumped as JSON) or raw bytes (written as they are, one per line)."""
    lines = [r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode() for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_nothing_lost(report: dict) -> None:
    rows = report["rows"]
    assert rows["read"] == rows["converted"] + rows["rejected"]
    assert rows["rejected"] == sum(report["rejected_by_reason"].values())
    assert report["splits"]["train"] + report["splits"]["val"] == rows["converted"]


def test_rendering_with_the_real_qwen3_tokenizer(qwen3_tokenizer):
    messages = convert_row(
        row(question=" 发烧了怎么办？\r\n", think="\n体温多少？\r\n需要补水。 ", answer="多喝水。\n")
    )
    assert messages[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert messages[1] == {"role": "user", "content": "发烧了怎么办？"}
    rendered = qwen3_tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\n发烧了怎么办？<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n体温多少？\n需要补水。\n</think>\n\n多喝水。<|im_end|>\n"
    )
    # The template's own reasoning field renders the same text: the convention round-trips exactly.
    as_reasoning = [
        *messages[:2],
        {"role": "assistant", "content": "多喝水。", "reasoning_content": "体温多少？\n需要补水。"},
    ]
    assert qwen3_tokenizer.apply_chat_template(as_reasoning, tokenize=False) == rendered
    ids = qwen3_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    special = special_token_ids(qwen3_tokenizer)
    # The reasoning tags are single special tokens, once each in the conversation.
    for name, tag in (("think_open", THINK_OPEN), ("think_close", THINK_CLOSE)):
        assert qwen3_tokenizer.encode(tag, add_special_tokens=False) == [special[name]]
        assert ids.count(special[name]) == 1
    assert conversion.conversation_token_length(qwen3_tokenizer, messages) == len(ids)


def test_all_241_real_rows_accounted_for(real_val_rows, qwen3_tokenizer, tmp_path):
    assert hashlib.sha256(real_val_rows.read_bytes()).hexdigest() == REAL_VAL_SHA256
    reports = [prepare(str(real_val_rows), tmp_path / f"run{i}", tokenizer=qwen3_tokenizer) for i in (1, 2)]
    report = reports[0]
    assert report["inputs"][0]["sha256"] == REAL_VAL_SHA256
    assert report["rows"] == {"read": 241, "converted": 240, "rejected": 1}
    assert report["rejected_by_reason"]["overlong"] == 1
    assert report["splits"] == {"kept_from_source": False, "train": 216, "val": 24}
    assert report["token_length"]["p50"] == 764 and report["token_length"]["max"] == 3151
    assert_nothing_lost(report)
    (reject,) = read_jsonl(tmp_path / "run1" / "rejects.jsonl")
    assert (reject["reason"], reject["tokens"], reject["line"]) == ("overlong", 3151, 196)
    assert json.loads(reject["raw"])["question"].startswith("医生，我在学习蛋白质序列比对时遇到了PAM矩阵")
    assert reports[0]["outputs"] == reports[1]["outputs"]
    for name in OUTPUT_FILES:
        assert (tmp_path / "run1" / name).read_bytes() == (tmp_path / "run2" / name).read_bytes()
    # The same rule, as training applies it when no tokenizer was given here.
    records = read_jsonl(real_val_rows)
    conversations = [convert_row(record) for record in records]
    assert conversion.find_overlong(qwen3_tokenizer, conversations, 2048) == [(195, 3151)]


BAD_ROWS = {
    "invalid_json": b'{"question": "q", "think": ',
    "not_an_object": b'["q", "t", "a"]',
    "missing_field": {"question": "q", "think": "t"},
    "missing_field_null": row(answer=None),
    "empty_field": row(think=" \n\t"),
    "non_string_field": row(think=42),
    "non_string_field_list": row(answer=["a", "b"]),
    "think_tag_in_text": row(think="<think>想一想"),
    "think_tag_in_text_answer": row(answer="结论</think>"),
    "chat_token_in_text": row(question="问题<|im_end|>"),
    "invalid_utf8": b'{"question": "\xff\xfe bad", "think": "t", "answer": "a"}',
    "duplicate": row(),  # the first row of every file below
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_each_bad_row_class_is_rejected_with_its_reason(case, tmp_path):
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), BAD_ROWS[case], row(question="第二个问题")])
    report = prepare(str(source), tmp_path / "out")
    reason = case.removesuffix("_null").removesuffix("_list").removesuffix("_answer")
    assert report["rows"] == {"read": 3, "converted": 2, "rejected": 1}
    assert report["rejected_by_reason"][reason] == 1
    assert_nothing_lost(report)
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert (reject["file"], reject["line"], reject["reason"]) == ("raw.jsonl", 2, reason)
    assert reject["raw"] and reject["detail"]


def test_overlong_rows_are_rejected_with_the_real_tokenizer(qwen3_tokenizer, tmp_path):
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), row(think="很长的推理。" * 40)])
    options = DataOptions(max_length=100)
    report = prepare(str(source), tmp_path / "out", options, tokenizer=qwen3_tokenizer)
    assert report["rows"] == {"read": 2, "converted": 1, "rejected": 1}
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == "overlong" and reject["tokens"] > 100 and reject["line"] == 2
    # Without a tokenizer nothing is measured, and the report says the check is left to training.
    report = prepare(str(source), tmp_path / "deferred", options)
    assert report["rows"]["converted"] == 2 and report["token_length"] is None
    assert "training" in report["length_check"]


def test_bom_and_crlf_are_normalised_not_rejected(tmp_path):
    rows = [row(), row(question="第二个问题", think="第一行\r\n第二行"), row(question="第三个问题")]
    clean = write_jsonl(
        tmp_path / "clean" / "raw.jsonl", [row(), row(question="第二个问题", think="第一行\n第二行"), rows[2]]
    )
    windows = tmp_path / "windows" / "raw.jsonl"
    windows.parent.mkdir()
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    windows.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join([*lines, b"not json"]) + b"\r\n\r\n")
    report = prepare(str(windows), tmp_path / "out-windows")
    assert report["rows"] == {"read": 4, "converted": 3, "rejected": 1}
    (reject,) = read_jsonl(tmp_path / "out-windows" / "rejects.jsonl")
    assert (reject["line"], reject["raw"]) == (4, "not json")
    prepare(str(clean), tmp_path / "out-clean")
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "out-windows" / name).read_bytes() == (tmp_path / "out-clean" / name).read_bytes()
    contents = [
        r["messages"][2]["content"]
        for name in ("train", "val")
        for r in read_jsonl(tmp_path / "out-windows" / f"{name}.jsonl")
    ]
    assert "<think>\n第一行\n第二行\n</think>\n\n多休息。" in contents


@pytest.fixture
def medsft_logging():
    """Restores the "medsft" logger after a test ran a command through medsft.cli (which configures it)."""
    logger = logging.getLogger("medsft")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def test_strict_fails_with_a_clear_message_and_writes_nothing(tmp_path):
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), b"not json"])
    with pytest.raises(DataError) as failure:
        data.main(["--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", "--strict"])
    message = str(failure.value)
    assert "--strict" in message and "invalid_json=1" in message and "raw.jsonl:2" in message
    assert "\n" not in message  # one line, as every command error
    assert not (tmp_path / "out" / "x").exists()
    assert data.main(["--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x"]) == 0
    assert read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")[0]["reason"] == "invalid_json"


def test_sample_conversion_is_deterministic_and_seeded(tmp_path):
    for run in ("a", "b"):
        assert data.main(["--src", str(SAMPLE_DATA), "--out-dir", str(tmp_path), "--name", run]) == 0
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "a" / "report.json").read_text(encoding="utf-8"))
    assert report["rows"]["rejected"] == 0 and report["rows"]["read"] >= 30
    assert report["splits"]["val"] == round(report["rows"]["read"] * 0.1)
    # Without --tokenizer the bundled Qwen3 tokenizer measures every conversation.
    assert report["tokenizer"] == str(bundled_tokenizer_dir())
    assert report["length_check"] == "rendered conversation <= 2048 tokens"
    assert 0 < report["token_length"]["min"] <= report["token_length"]["max"] <= 2048
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b"]  # no lock, no temporary folder
    assert (
        data.main(["--src", str(SAMPLE_DATA), "--out-dir", str(tmp_path), "--name", "c", "--seed", "7"]) == 0
    )
    assert (tmp_path / "c" / "val.jsonl").read_bytes() != (tmp_path / "a" / "val.jsonl").read_bytes()


def test_field_name_flags(tmp_path):
    source = write_jsonl(
        tmp_path / "o1.jsonl",
        [{"Question": f"问题{i}", "Complex_CoT": "推理", "Response": "回答"} for i in range(5)],
    )
    flags = ["--question-field", "Question", "--think-field", "Complex_CoT", "--answer-field", "Response"]
    assert data.main(["--src", str(source), "--out-dir", str(tmp_path), "--name", "o1", *flags]) == 0
    report = json.loads((tmp_path / "o1" / "report.json").read_text(encoding="utf-8"))
    assert report["rows"] == {"read": 5, "converted": 5, "rejected": 0}
    first = read_jsonl(tmp_path / "o1" / "train.jsonl")[0]["messages"]
    assert first[1]["content"].startswith("问题") and first[2]["content"] == "<think>\n推理\n</think>\n\n回答"
    # The default field names find nothing: a run that converts no row fails, naming the flags to use.
    with pytest.raises(DataError, match="0 of 5 rows converted .*missing_field=5.*--question-field"):
        data.main(["--src", str(source), "--out-dir", str(tmp_path), "--name", "default-fields"])
    assert not (tmp_path / "default-fields").exists()


def test_a_source_with_both_splits_keeps_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "dataset"
    (source / "data").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([row(question=f"训练{i}") for i in range(6)]),
        source / "data" / "train-00000.parquet",
    )
    val_rows = [row(question="验证0"), row(question="训练0")]  # the second leaks a training row: a duplicate
    (source / "data" / "validation.json").write_text(
        json.dumps(val_rows, ensure_ascii=False), encoding="utf-8"
    )
    write_jsonl(source / "test.jsonl", [row(question="测试")])
    report = prepare(str(source), tmp_path / "out")
    assert report["splits"] == {"kept_from_source": True, "train": 6, "val": 1}
    assert report["skipped_files"] == [{"file": "test.jsonl", "reason": sources.TEST_SPLIT_SKIPPED}]
    assert report["rejected_by_reason"]["duplicate"] == 1
    assert_nothing_lost(report)
    assert [r["messages"][1]["content"] for r in read_jsonl(tmp_path / "out" / "val.jsonl")] == ["验证0"]
    (reject,) = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert (reject["file"], reject["line"]) == ("data/validation.json", 2)


def test_failures_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, medsft_logging):
    import modelscope

    def unreachable(dataset_id, **kwargs):
        raise ConnectionError("Failed to resolve 'modelscope.cn'")

    monkeypatch.setattr(modelscope, "dataset_snapshot_download", unreachable)
    monkeypatch.delenv("MEDSFT_DEBUG", raising=False)
    failures = {
        # the default source is the ModelScope dataset
        (): ("krisfu/delicate_medical_r1_data", "--src", "modelscope download"),
        ("--src", str(tmp_path / "missing.jsonl")): ("does not exist",),
        ("--src", str(SAMPLE_DATA), "--tokenizer", str(tmp_path)): ("holds no tokenizer", "TOKENIZER="),
    }
    for arguments, expected in failures.items():
        assert cli.main(["data", *arguments, "--out-dir", str(tmp_path / "out")]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("medsft data: ") and captured.err.count("\n") == 1
        assert all(part in captured.err for part in expected), (arguments, captured.err)
        assert "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()


def test_progress_goes_to_the_log_on_stderr(tmp_path, capsys, medsft_logging):
    assert cli.main(["data", "--src", str(SAMPLE_DATA), "--out-dir", str(tmp_path), "--name", "s"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert all(line.startswith("medsft data: ") for line in lines)
    assert any("rows read" in line and "rejected 0" in line for line in lines)
    assert any(str(tmp_path / "s" / "report.json") in line for line in lines)


def test_default_names():
    assert (
        data.default_name("../shared/data/delicate_medical_r1_data/val.jsonl")
        == "delicate_medical_r1_data_val"
    )
    assert data.default_name("krisfu/delicate_medical_r1_data") == "delicate_medical_r1_data"
    assert data.default_name("data/sample/medical_sample.jsonl") == "medical_sample"
    assert data.default_name("/data/my_set/") == "my_set"


def test_a_folder_without_a_val_split_is_split_here_and_test_files_stay_out(tmp_path):
    source = tmp_path / "dataset"
    write_jsonl(source / "train.jsonl", [row(question=f"训练{i}") for i in range(10)])
    write_jsonl(source / "extra" / "more.jsonl", [row(question=f"补充{i}") for i in range(10)])
    write_jsonl(source / "test.jsonl", [row(question="测试")])
    (source / "configuration.json").write_text('{"framework": "pytorch"}', encoding="utf-8")
    report = prepare(str(source), tmp_path / "out")
    assert [entry["file"] for entry in report["inputs"]] == ["extra/more.jsonl", "train.jsonl"]
    assert report["skipped_files"] == [
        {"file": "configuration.json", "reason": "hub metadata, no rows"},
        {"file": "test.jsonl", "reason": sources.TEST_SPLIT_SKIPPED},
    ]
    assert report["rows"] == {"read": 20, "converted": 20, "rejected": 0}
    assert report["splits"] == {"kept_from_source": False, "train": 18, "val": 2}
    only_test = write_jsonl(tmp_path / "held-out" / "test.jsonl", [row()]).parent
    with pytest.raises(data.DataError, match="only test files"):
        prepare(str(only_test), tmp_path / "out-test")
    named_directly = prepare(str(only_test / "test.jsonl"), tmp_path / "out-test")
    assert named_directly["rows"]["converted"] == 1


def test_system_prompt_is_configurable_and_can_be_left_out():
    custom = convert_row(row(), DataOptions(system_prompt="你是一名全科医生。"))
    assert custom[0] == {"role": "system", "content": "你是一名全科医生。"}
    assert [m["role"] for m in convert_row(row(), DataOptions(system_prompt=""))] == ["user", "assistant"]
