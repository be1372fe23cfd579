"""`medsft data` under hostile conditions: concurrent runs, signals, broken files and bad arguments.

The output set (train, val, rejects, report) is one unit: a run replaces it whole or leaves it as it was.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medsft import atomic_folder, cli, data

OUTPUT_FILES = {"train.jsonl", "val.jsonl", "rejects.jsonl", "report.json"}
REPO_ROOT = Path(__file__).resolve().parent.parent


def row(question: str = "头痛怎么办？", think: str = "先分析原因。", answer: str = "多休息。") -> dict:
    return {"question": question, "think": think, "answer": answer}


def rows(prefix: str, count: int, think: str = "先分析原因。") -> list[dict]:
    return [row(question=f"{prefix}{i}", think=think) for i in range(count)]


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode() for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_consistent_set(folder: Path) -> dict:
    """The folder holds exactly one output set whose report matches its files; returns the report."""
    assert {entry.name for entry in folder.iterdir()} == OUTPUT_FILES
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    for name, output in report["outputs"].items():
        content = (folder / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == output["sha256"], name
        assert content.count(b"\n") == output["rows"], name
    counts = report["rows"]
    assert counts["read"] == counts["converted"] + counts["rejected"]
    return report


def leftovers(*folders: Path) -> list[str]:
    """Temporary files or folders a run may have left behind."""
    return [
        entry.name
        for folder in folders
        if folder.is_dir()
        for entry in folder.iterdir()
        if ".tmp" in entry.name
    ]


@pytest.fixture
def run_cli(capsys):
    """`medsft data …` in this process: (exit status, stderr). Restores the medsft logger afterwards."""
    import logging

    logger = logging.getLogger("medsft")
    saved = logger.handlers[:], logger.propagate, logger.level

    def run(*arguments: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            status = cli.main(["data", *arguments])
        except SystemExit as exit_:  # argparse errors
            status = exit_.code
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return status, captured.err

    yield run
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsft data: "), stderr
    return lines[0]


FAST = ("--max-length", "none")  # no length check: no tokenizer to load


# --- 1. one run at a time, the set replaced whole ----------------------------------------------------------


def test_a_run_refuses_while_another_run_holds_the_folder(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 5))
    out = tmp_path / "out"
    assert run_cli("--src", str(source), "--out-dir", str(out), "--name", "x", *FAST)[0] == 0
    before = {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES}
    write_jsonl(source, rows("新问题", 5))
    with open(out / ".x.lock", "a+") as held:  # what a running `medsft data --name x` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, stderr = run_cli("--src", str(source), "--out-dir", str(out), "--name", "x", *FAST)
    assert status == 2
    assert "another run is writing x" in one_error_line(stderr)
    assert {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES} == before
    assert run_cli("--src", str(source), "--out-dir", str(out), "--name", "x", *FAST)[0] == 0
    assert "新问题0" in (out / "x" / "train.jsonl").read_text(encoding="utf-8") + (
        out / "x" / "val.jsonl"
    ).read_text(encoding="utf-8")


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 5))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".x.lock").write_text("999999\n")  # a killed run's lock file: nobody holds the lock
    stale_temp = out / ".x.tmp-killed"
    stale_temp.mkdir()
    (stale_temp / "train.jsonl").write_text("half")
    assert run_cli("--src", str(source), "--out-dir", str(out), "--name", "x", *FAST)[0] == 0
    assert_consistent_set(out / "x")
    assert sorted(entry.name for entry in out.iterdir()) == ["x"]


def test_concurrent_runs_leave_one_whole_set(tmp_path):
    out = tmp_path / "out"
    sources = [write_jsonl(tmp_path / f"{tag}.jsonl", rows(tag, 400, "推理" * 200)) for tag in ("甲", "乙")]
    command = [sys.executable, "-m", "medsft.cli", "data", "--out-dir", str(out), "--name", "same", *FAST]
    processes = [
        subprocess.Popen([*command, "--src", str(source)], stderr=subprocess.PIPE, text=True)
        for source in sources
    ]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    for status, stderr in results:
        assert status == 0 or (status == 2 and "another run is writing same" in stderr), stderr
    report = assert_consistent_set(out / "same")
    winner = Path(report["source"]).stem
    texts = [
        r["messages"][1]["content"]
        for name in ("train", "val")
        for r in read_jsonl(out / "same" / f"{name}.jsonl")
    ]
    assert len(texts) == 400 and all(text.startswith(winner) for text in texts)
    assert leftovers(out, out / "same") == []


def read_in(folder: int, name: str) -> bytes:
    """A file of the folder open as `folder` (a descriptor), whatever the folder's path points to now."""
    with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=folder), "rb") as handle:
        return handle.read()


def test_a_reader_never_sees_a_mixed_set(tmp_path):
    """A reader that opens the folder once and reads its files sees one whole set, while runs replace it."""
    out = tmp_path / "out"
    sources = [write_jsonl(tmp_path / f"{tag}.jsonl", rows(tag, 300, "推理" * 100)) for tag in ("甲", "乙")]
    options = data.DataOptions(max_length=None)
    data.prepare(str(sources[0]), out / "x", options)
    stop, seen, mixed = threading.Event(), [], []

    def read_sets() -> None:
        while not stop.is_set():
            try:
                folder = os.open(out / "x", os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                contents = {name: read_in(folder, name) for name in OUTPUT_FILES}
            except FileNotFoundError:  # the replaced old set being removed: read again
                continue
            finally:
                os.close(folder)
            report = json.loads(contents["report.json"])
            hashes = {name: hashlib.sha256(contents[name]).hexdigest() for name in report["outputs"]}
            (seen if hashes == {n: o["sha256"] for n, o in report["outputs"].items()} else mixed).append(1)

    reader = threading.Thread(target=read_sets)
    reader.start()
    try:
        for run in range(12):
            data.prepare(str(sources[(run + 1) % 2]), out / "x", options)
    finally:
        stop.set()
        reader.join()
    assert mixed == [] and seen
    assert_consistent_set(out / "x")


def test_a_failed_replace_leaves_the_old_set_and_no_temporary_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 6))
    options = data.DataOptions(max_length=None)
    data.prepare(str(source), out / "x", options)
    before = {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES}
    write_jsonl(source, rows("新问题", 6))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        data.prepare(str(source), out / "x", options)
    assert {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES} == before
    assert sorted(entry.name for entry in out.iterdir()) == ["x"]


# --- 2. signals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_leaves_the_old_set_or_the_new_one_and_no_temporary_files(tmp_path, signum):
    out = tmp_path / "out"
    old_source = write_jsonl(tmp_path / "old.jsonl", rows("旧", 20))
    assert data.main(["--src", str(old_source), "--out-dir", str(out), "--name", "x", *FAST]) == 0
    old = {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES}
    new_source = write_jsonl(tmp_path / "new.jsonl", rows("新", 6000, "很长的推理。" * 300))
    command = [sys.executable, "-m", "medsft.cli", "data", "--src", str(new_source), "--out-dir", str(out)]
    interrupted = 0
    for delay in (0.0, 0.02, 0.2):
        process = subprocess.Popen([*command, "--name", "x", *FAST], stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        while process.poll() is None and not leftovers(out, out / "x") and time.monotonic() - started < 60:
            time.sleep(0.001)  # wait for the first sign of writing
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signum)
        status = process.wait(timeout=120)
        stderr = process.stderr.read()
        assert "Traceback" not in stderr
        assert leftovers(out, out / "x") == []
        assert sorted(entry.name for entry in out.iterdir()) == ["x"]  # no lock or temporary folder either
        assert_consistent_set(out / "x")
        now = {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES}
        # 0: finished first; -signal: killed after the command's work, with the default handler back
        assert status in {0, 128 + signum, -signum}, stderr
        if status == 128 + signum:
            assert "interrupted by" in stderr
        if now == old:
            assert status == 128 + signum and "nothing written" in stderr
            interrupted += 1
        else:
            assert json.loads(now["report.json"])["rows"]["read"] == 6000
            assert status != 128 + signum or "the new set was written" in stderr
            for name, content in old.items():  # put the old set back for the next try
                (out / "x" / name).write_bytes(content)
    assert interrupted, "no run was interrupted while it wrote: make the source larger"


def test_a_signal_that_waits_for_the_swap_reports_the_new_set(tmp_path, run_cli, monkeypatch):
    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "new.jsonl", rows("新", 4))
    swap_in = atomic_folder.swap_in

    def swap_then_signal(new: Path, folder: Path) -> None:
        swap_in(new, folder)
        signal.raise_signal(signal.SIGTERM)  # arrives inside the guarded swap: it waits for the swap's end

    monkeypatch.setattr(atomic_folder, "swap_in", swap_then_signal)
    status, stderr = run_cli("--src", str(source), "--out-dir", str(out), "--name", "x", *FAST)
    assert status == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM: the new set was written" in stderr, stderr
    assert assert_consistent_set(out / "x")["rows"]["read"] == 4
    assert leftovers(out, out / "x") == [] and sorted(entry.name for entry in out.iterdir()) == ["x"]


# --- 3. one bad row never aborts a run ---------------------------------------------------------------------


def test_a_lone_surrogate_is_an_invalid_text_reject(tmp_path, run_cli):
    lone = b'{"question": "q\\ud800x", "think": "t", "answer": "a"}'
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), lone, row(question="第二个")])
    status, _ = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)
    assert status == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    assert report["rows"] == {"read": 3, "converted": 2, "rejected": 1}
    (reject,) = read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")
    assert (reject["line"], reject["reason"]) == (2, "invalid_text")
    assert "question" in reject["detail"]
    # The same row inside a .json list: its raw text is written back as it was read.
    listed = tmp_path / "raw.json"
    listed.write_bytes(b"[" + json.dumps(row()).encode() + b",\n " + lone + b"]")
    assert run_cli("--src", str(listed), "--out-dir", str(tmp_path / "out"), "--name", "y", *FAST)[0] == 0
    (reject,) = read_jsonl(tmp_path / "out" / "y" / "rejects.jsonl")
    assert (reject["line"], reject["reason"], reject["raw"]) == (2, "invalid_text", lone.decode())


def test_a_deeply_nested_row_is_an_invalid_json_reject(tmp_path, run_cli):
    deep = b"[" * 100_000 + b"]" * 100_000
    huge_number = b'{"question": ' + b"1" * 5000 + b', "think": "t", "answer": "a"}'
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), deep, huge_number, row(question="第二个")])
    status, _ = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)
    assert status == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    assert report["rows"] == {"read": 4, "converted": 2, "rejected": 2}
    assert [(r["line"], r["reason"]) for r in read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")] == [
        (2, "invalid_json"),
        (3, "invalid_json"),
    ]


# --- 4. sources that are outputs ---------------------------------------------------------------------------


def test_a_source_inside_the_output_folder_is_refused(tmp_path, run_cli):
    out = tmp_path / "processed"
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), b"not json", row(question="第二个")])
    assert run_cli("--src", str(source), "--out-dir", str(out), "--name", "sample", *FAST)[0] == 0
    before = {name: (out / "sample" / name).read_bytes() for name in OUTPUT_FILES}
    for src in (out / "sample", out / "sample" / "train.jsonl", out):
        status, stderr = run_cli("--src", str(src), "--out-dir", str(out), "--name", "sample", *FAST)
        assert status == 2
        assert "inside the output folder" in one_error_line(stderr) or "output folder" in stderr
    # a source folder that holds the output folder would read the outputs back as input
    status, stderr = run_cli("--src", str(tmp_path), "--out-dir", str(out), "--name", "sample", *FAST)
    assert status == 2 and "output folder" in one_error_line(stderr)
    assert {name: (out / "sample" / name).read_bytes() for name in OUTPUT_FILES} == before


def test_rows_already_in_messages_form_are_refused(tmp_path, run_cli):
    out = tmp_path / "processed"
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 4))
    assert run_cli("--src", str(source), "--out-dir", str(out), "--name", "a", *FAST)[0] == 0
    converted = tmp_path / "elsewhere" / "train.jsonl"
    converted.parent.mkdir()
    converted.write_bytes((out / "a" / "train.jsonl").read_bytes())
    status, stderr = run_cli("--src", str(converted), "--out-dir", str(out), "--name", "b", *FAST)
    assert status == 2
    line = one_error_line(stderr)
    assert "messages" in line and "train.jsonl" in line and "line 1" in line
    assert not (out / "b").exists()


# --- 5. whole files that cannot be parsed ------------------------------------------------------------------


def test_a_json_array_with_a_syntax_error_is_one_error_naming_the_place(tmp_path, run_cli):
    records = [json.dumps(row(question=f"问题{i}"), ensure_ascii=False, indent=2) for i in range(5)]
    text = "[\n" + ",\n".join(records) + "\n]\n"
    broken = text.replace('"问题3",', '"问题3"', 1)  # one missing comma
    source = tmp_path / "rows.json"
    source.write_text(broken, encoding="utf-8")
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2
    line = one_error_line(stderr)
    assert "rows.json" in line and "JSON array" in line and "line " in line and "column " in line
    assert not (tmp_path / "out").exists()
    source.write_text(text, encoding="utf-8")
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)[0] == 0
    assert assert_consistent_set(tmp_path / "out" / "rows")["rows"]["read"] == 5


def test_a_text_file_named_parquet_is_one_clear_error(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "rows.parquet", rows("问题", 3))
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2
    line = one_error_line(stderr)
    assert "rows.parquet" in line and "Parquet" in line and "ArrowInvalid" not in line.split(":")[0]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_a_byte_order_mark_is_decoded(tmp_path, run_cli, encoding):
    records = [row(question=f"问题{i}") for i in range(4)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records)
    bom = {"utf-16": "", "utf-16-be": "\ufeff", "utf-32": ""}[encoding]
    source = tmp_path / "rows.jsonl"
    source.write_bytes((bom + text).encode(encoding))
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    assert report["rows"] == {"read": 4, "converted": 4, "rejected": 0}


def test_utf16_without_a_byte_order_mark_is_named(tmp_path, run_cli):
    text = "".join(json.dumps(row(question=f"问题{i}"), ensure_ascii=False) + "\n" for i in range(4))
    source = tmp_path / "rows.jsonl"
    source.write_bytes(text.encode("utf-16-le"))
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2
    line = one_error_line(stderr)
    assert "rows.jsonl" in line and "UTF-16" in line and "UTF-8" in line


def test_cr_only_line_endings_are_counted_as_lines(tmp_path, run_cli):
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows("问题", 4)]
    source = tmp_path / "mac.jsonl"
    source.write_bytes(b"\r".join([*lines, b"not json"]) + b"\r")
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    assert report["rows"] == {"read": 5, "converted": 4, "rejected": 1}
    (reject,) = read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")
    assert (reject["line"], reject["raw"]) == (5, "not json")


def test_a_file_with_no_json_line_is_one_error(tmp_path, run_cli):
    source = tmp_path / "notes.jsonl"
    source.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01")
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2
    line = one_error_line(stderr)
    assert "notes.jsonl" in line and "JSON Lines" in line


# --- 6. nothing converted is a failure ---------------------------------------------------------------------


def test_a_run_that_converts_nothing_fails_and_keeps_the_old_set(tmp_path, run_cli):
    out = tmp_path / "out"
    good = write_jsonl(tmp_path / "good.jsonl", rows("问题", 4))
    assert run_cli("--src", str(good), "--out-dir", str(out), "--name", "x", *FAST)[0] == 0
    before = {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES}
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    renamed = write_jsonl(tmp_path / "o1.jsonl", [{"Question": "q", "Complex_CoT": "t", "Response": "a"}] * 3)
    cases = {
        (str(empty),): ("no rows",),
        (str(renamed),): ("0 of 3 rows", "missing_field=3", "--question-field"),
        (str(renamed), "--question-field", "Question"): ("0 of 3 rows", "missing_field=3"),
    }
    for (src, *flags), expected in cases.items():
        status, stderr = run_cli("--src", src, "--out-dir", str(out), "--name", "x", *FAST, *flags)
        assert status == 2
        line = one_error_line(stderr)
        assert all(part in line for part in expected), line
    assert {name: (out / "x" / name).read_bytes() for name in OUTPUT_FILES} == before


# --- 7. arguments, special tokens, skipped files -----------------------------------------------------------


@pytest.mark.parametrize("name", ["/abs", "../x", "a/b", "..", ".", "", ".hidden"])
def test_the_name_cannot_leave_the_output_folder(tmp_path, run_cli, name):
    source = write_jsonl(tmp_path / "src" / "raw.jsonl", rows("问题", 3))
    (tmp_path / "out").mkdir()
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", name, *FAST)
    assert status == 2 and "--name" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    assert list((tmp_path / "out").iterdir()) == []


def test_a_source_named_dot_dot_needs_a_name(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(write_jsonl(tmp_path / "a" / "b" / "raw.jsonl", rows("问题", 3)).parent)
    status, stderr = run_cli("--src", "..", "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2 and "--name" in one_error_line(stderr)


@pytest.mark.parametrize("value", ["-1", "0", "abc", "1.5"])
def test_max_length_must_be_positive_or_none(tmp_path, run_cli, value):
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 3))
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--max-length", value)
    assert status == 2 and "--max-length" in stderr
    assert not (tmp_path / "out").exists()


def test_max_length_none_turns_the_check_off_and_says_so(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "raw.jsonl", [row(think="很长的推理。" * 400)])
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path), "--name", "x", *FAST)[0] == 0
    report = assert_consistent_set(tmp_path / "x")
    assert report["rows"]["converted"] == 1 and report["options"]["max_length"] is None
    assert "no length limit" in report["length_check"]


SPECIAL_TOKENS = ["<|vision_start|>", "<tool_call>", "</tool_response>", "<|fim_middle|>", "<|box_end|>"]


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_every_qwen3_special_token_is_refused_in_text(tmp_path, run_cli, token):
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), row(question="问题", answer=f"见{token}")])
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path), "--name", "x", *FAST)[0] == 0
    (reject,) = read_jsonl(tmp_path / "x" / "rejects.jsonl")
    assert reject["reason"] == "chat_token_in_text" and token in reject["detail"]


def test_the_special_tokens_come_from_the_given_tokenizer(tmp_path, run_cli, qwen3_tokenizer):
    import copy

    tokenizer = copy.deepcopy(qwen3_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|patient_record|>"]})
    folder = tmp_path / "tokenizer"
    tokenizer.save_pretrained(folder)
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), row(question="病历<|patient_record|>")])
    arguments = ("--src", str(source), "--out-dir", str(tmp_path), "--tokenizer", str(folder))
    assert run_cli(*arguments, "--name", "x")[0] == 0
    (reject,) = read_jsonl(tmp_path / "x" / "rejects.jsonl")
    assert reject["reason"] == "chat_token_in_text" and "<|patient_record|>" in reject["detail"]
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path), "--name", "y", *FAST)[0] == 0
    assert read_jsonl(tmp_path / "y" / "rejects.jsonl") == []  # not special to the Qwen3 tokenizer


def test_every_file_left_out_of_a_folder_is_listed_with_its_reason(tmp_path, run_cli):
    source = tmp_path / "dataset"
    write_jsonl(source / "train.jsonl", rows("训练", 5))
    write_jsonl(source / "test.jsonl", rows("测试", 2))
    write_jsonl(source / ".cache" / "old.jsonl", rows("缓存", 2))
    (source / "README.md").write_text("# dataset", encoding="utf-8")
    (source / "configuration.json").write_text('{"framework": "pytorch"}', encoding="utf-8")
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    skipped = {entry["file"]: entry["reason"] for entry in report["skipped_files"]}
    assert set(skipped) == {"test.jsonl", ".cache", "README.md", "configuration.json"}
    assert "test" in skipped["test.jsonl"] and "hidden" in skipped[".cache"]
    assert "metadata" in skipped["configuration.json"] and ".jsonl" in skipped["README.md"]
    assert [entry["file"] for entry in report["inputs"]] == ["train.jsonl"]


def test_files_the_output_folder_did_not_get_from_a_run_are_never_deleted(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 3))
    notes = tmp_path / "out" / "x" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine", encoding="utf-8")
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)
    assert status == 2 and "notes.txt" in one_error_line(stderr)
    assert notes.read_text(encoding="utf-8") == "mine"


def test_links_pipes_and_other_non_files_in_a_folder_are_listed_never_read(tmp_path, run_cli):
    """A linked folder is not followed, a FIFO never opened (a read would block forever): both listed."""
    source = tmp_path / "dataset"
    write_jsonl(source / "train.jsonl", rows("训练", 5))
    write_jsonl(tmp_path / "elsewhere" / "more.jsonl", rows("别处", 2))
    (source / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    os.mkfifo(source / "pipe.jsonl")
    (source / "dangling.jsonl").symlink_to(tmp_path / "missing.jsonl")
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    report = assert_consistent_set(tmp_path / "out" / "x")
    skipped = {entry["file"]: entry["reason"] for entry in report["skipped_files"]}
    assert "link to a folder" in skipped["linked"] and "regular file" in skipped["pipe.jsonl"]
    assert "leads nowhere" in skipped["dangling.jsonl"]
    assert report["rows"]["read"] == 5


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda path: path.symlink_to(path), "leads nowhere"),
        (lambda path: os.mkfifo(path), "neither a regular file nor a folder"),
    ],
    ids=["symlink-loop", "fifo"],
)
def test_a_source_that_is_a_loop_or_a_pipe_is_named_as_such(tmp_path, run_cli, make_source, message):
    source = tmp_path / "rows.jsonl"
    make_source(source)
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)
    assert status == 2 and message in one_error_line(stderr)


def test_a_row_that_names_a_key_twice_is_an_invalid_json_reject(tmp_path, run_cli):
    repeated = '{"question": "头痛", "question": "发烧", "think": "t", "answer": "a"}'
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), repeated.encode()])
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    (reject,) = read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")
    assert reject["reason"] == "invalid_json" and "'question' appears twice" in reject["detail"]
    listed = tmp_path / "raw.json"
    listed.write_text(f"[{json.dumps(row())}, {repeated}]", encoding="utf-8")
    status, stderr = run_cli("--src", str(listed), "--out-dir", str(tmp_path / "out"), "--name", "y", *FAST)
    assert status == 2 and "appears twice" in one_error_line(stderr)


def test_a_lone_surrogate_is_shown_as_its_code_point(tmp_path, run_cli):
    lone = b'{"question": "q\\udca0x", "think": "t", "answer": "a"}'
    source = write_jsonl(tmp_path / "raw.jsonl", [row(), lone])
    assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    (reject,) = read_jsonl(tmp_path / "out" / "x" / "rejects.jsonl")
    assert "U+DCA0" in reject["detail"]


def test_mostly_chinese_utf16_without_a_byte_order_mark_is_named(tmp_path, run_cli):
    question = "患者男性，六十五岁，反复胸闷胸痛三年，加重伴呼吸困难两天，既往高血压病史十余年" * 3
    text = "".join(json.dumps(row(question=question + str(i)), ensure_ascii=False) + "\n" for i in range(3))
    source = tmp_path / "rows.jsonl"
    source.write_bytes(text.encode("utf-16-be"))
    status, stderr = run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), *FAST)
    assert status == 2 and "UTF-16-BE without a byte-order mark" in one_error_line(stderr)


def test_outputs_follow_the_umask(tmp_path, run_cli):
    source = write_jsonl(tmp_path / "raw.jsonl", rows("问题", 6))
    previous = os.umask(0o022)
    try:
        assert run_cli("--src", str(source), "--out-dir", str(tmp_path / "out"), "--name", "x", *FAST)[0] == 0
    finally:
        os.umask(previous)
    folder = tmp_path / "out" / "x"
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {path.stat().st_mode & 0o777 for path in folder.iterdir()} == {0o644}
