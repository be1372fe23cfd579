"""`medsft data` fed random bytes, random JSON values and mutated real rows (hypothesis), in this process.

Whatever the input: the command exits 0 or 2 and never raises; exit 2 is one line on stderr and writes
nothing; exit 0 leaves one consistent set (rows read = converted + rejected, report hashes equal the
files' hashes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsft import cli, data
from medsft.paths import sample_data_file, shared_dir

EXAMPLES = 150  # per property: 450 runs of the command in all
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTPUT_FILES = {"train.jsonl", "val.jsonl", "rejects.jsonl", "report.json"}
BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def real_rows() -> list[dict]:
    path = shared_dir() / "data" / "delicate_medical_r1_data" / "val.jsonl"
    path = path if path.is_file() else sample_data_file()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:60]


REAL_ROWS = real_rows()
SPECIAL_TEXTS = [
    "<|im_end|>",
    "<|vision_start|>",
    "<tool_call>",
    "<think>",
    "</think>",
    "\r\n",
    "\x00",
    "\u2028",
]


@pytest.fixture
def run_data(monkeypatch, qwen3_tokenizer):
    """`medsft data` through the CLI entry point: (exit status, stderr); the shipped tokenizer loaded once."""
    monkeypatch.setattr(data, "load_length_tokenizer", lambda source=None: qwen3_tokenizer)
    logger = logging.getLogger("medsft")
    saved = logger.handlers[:], logger.propagate, logger.level

    def run(source: Path, out_dir: Path, *flags: str) -> tuple[int, str]:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = cli.main(
                ["data", "--src", str(source), "--out-dir", str(out_dir), "--name", "x", *flags]
            )
        return status, stderr.getvalue()

    yield run
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def check_outcome(status: int, stderr: str, out_dir: Path) -> dict | None:
    """The contract for any input; returns the report of a successful run."""
    assert status in {0, 2}, stderr
    assert "Traceback" not in stderr
    leftovers = [entry.name for entry in out_dir.iterdir() if entry.name != "x"] if out_dir.is_dir() else []
    assert leftovers == []  # no lock file, no temporary folder
    if status == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("medsft data: "), stderr
        assert not (out_dir / "x").exists()
        return None
    folder = out_dir / "x"
    assert {entry.name for entry in folder.iterdir()} == OUTPUT_FILES
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    for name, output in report["outputs"].items():
        content = (folder / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == output["sha256"]
        assert content.count(b"\n") == output["rows"]
        for line in content.splitlines():
            json.loads(line.decode("utf-8"))  # every written line is UTF-8 JSON
    rows = report["rows"]
    assert rows["read"] == rows["converted"] + rows["rejected"]
    assert rows["converted"] >= 1
    assert (
        rows["rejected"]
        == sum(report["rejected_by_reason"].values())
        == report["outputs"]["rejects.jsonl"]["rows"]
    )
    assert rows["converted"] == report["splits"]["train"] + report["splits"]["val"]
    return report


def jsonl_line_count(content: bytes) -> int:
    """Non-blank lines, as a JSON Lines reader counts them: CRLF, CR and LF each end a line; a UTF-8
    byte-order mark is one only at the start of the file."""
    return sum(1 for line in re.split(rb"\r\n|\r|\n", content.removeprefix(b"\xef\xbb\xbf")) if line.strip())


@PROPERTY_SETTINGS
@given(content=st.binary(max_size=600), suffix=st.sampled_from([".jsonl", ".json", ".parquet"]))
def test_random_bytes(run_data, content, suffix):
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / f"rows{suffix}"
        source.write_bytes(content)
        status, stderr = run_data(source, Path(work) / "out", "--max-length", "none")
        report = check_outcome(status, stderr, Path(work) / "out")
        if report and suffix == ".jsonl" and not content.startswith(BYTE_ORDER_MARKS[1:]):
            assert report["rows"]["read"] == jsonl_line_count(content)


# Any JSON value, lone surrogates included (json.dumps escapes them as \udXXX).
ANY_TEXT = st.text(
    alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=12
) | st.sampled_from(SPECIAL_TEXTS)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=8,
)
FIELD_VALUES = st.one_of(ANY_TEXT, ANY_TEXT.map(lambda text: f"问{text}答"), JSON_VALUES)
RAW_ROWS = st.one_of(
    st.fixed_dictionaries({"question": FIELD_VALUES, "think": FIELD_VALUES, "answer": FIELD_VALUES}),
    JSON_VALUES,
)


@PROPERTY_SETTINGS
@given(
    rows=st.lists(RAW_ROWS, max_size=6),
    as_array=st.booleans(),
    ascii_only=st.booleans(),
)
def test_random_json_values(run_data, rows, as_array, ascii_only):
    with tempfile.TemporaryDirectory() as work:
        if as_array:
            source = Path(work) / "rows.json"
            source.write_text(json.dumps(rows, ensure_ascii=True), encoding="utf-8")
        else:
            source = Path(work) / "rows.jsonl"
            text = "".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in rows)
            source.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        status, stderr = run_data(source, Path(work) / "out", "--max-length", "none")
        report = check_outcome(status, stderr, Path(work) / "out")
        if report:
            assert report["rows"]["read"] == len(rows)


def mutate(line: bytes, kind: str, position: int, value) -> bytes:
    if kind == "truncate":
        return line[: position % (len(line) + 1)]
    if kind == "flip":
        index = position % max(len(line), 1)
        return line[:index] + bytes([line[index] ^ 0x80]) + line[index + 1 :] if line else line
    if kind == "insert_bytes":
        index = position % (len(line) + 1)
        return line[:index] + value + line[index:]
    return line


def mutate_record(record: dict, kind: str, field: str, value) -> dict:
    record = dict(record)
    if kind == "drop":
        record.pop(field, None)
    elif kind == "replace":
        record[field] = value
    elif kind == "special":
        record[field] = f"{record.get(field)}{value}"
    elif kind == "messages":
        record = {"messages": [{"role": "user", "content": str(record.get(field))}]}
    return record


MUTATION = st.tuples(
    st.sampled_from(range(len(REAL_ROWS))),
    st.sampled_from(["none", "drop", "replace", "special", "messages", "truncate", "flip", "insert_bytes"]),
    st.sampled_from(["question", "think", "answer"]),
    st.integers(min_value=0, max_value=10_000),
    st.one_of(JSON_VALUES, st.sampled_from(SPECIAL_TEXTS), st.binary(min_size=1, max_size=4)),
)


@PROPERTY_SETTINGS
@given(
    mutations=st.lists(MUTATION, min_size=1, max_size=5),
    line_end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    bom=st.booleans(),
    max_length=st.sampled_from(["none", "2048", "300"]),
)
def test_mutated_real_rows(run_data, mutations, line_end, bom, max_length):
    lines = []
    for index, kind, field, position, value in mutations:
        record = REAL_ROWS[index]
        if kind in {"drop", "replace", "special", "messages"}:
            value = value.decode("latin-1") if isinstance(value, bytes) else value
            value = value if kind == "replace" else str(value)
            record = mutate_record(record, kind, field, value)
        line = json.dumps(record, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
        lines.append(mutate(line, kind, position, value if isinstance(value, bytes) else b"\x00"))
    content = (b"\xef\xbb\xbf" if bom else b"") + line_end.join(lines) + line_end
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "rows.jsonl"
        source.write_bytes(content)
        status, stderr = run_data(source, Path(work) / "out", "--max-length", max_length)
        report = check_outcome(status, stderr, Path(work) / "out")
        if report:
            assert report["rows"]["read"] == jsonl_line_count(content)
        elif any(kind == "messages" for _, kind, *_ in mutations):
            assert "messages" in stderr or "0 of" in stderr or "no line is JSON" in stderr
