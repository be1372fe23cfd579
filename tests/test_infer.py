"""`medsft infer`: streamed output under reasoning/answer headers; batch mode keeps every input line."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from tiny_chat_models import THINKING_REPLY_ANSWER, THINKING_REPLY_REASONING

from medsft import infer
from medsft.chat_format import THINK_TAGS
from medsft.generate import GenerationError, GenerationSettings, newest_final_model
from medsft.model import ModelSourceError


@pytest.fixture
def medsft_log(caplog, monkeypatch):
    """Records the `medsft` loggers' lines (cli.configure_logging may have stopped their propagation)."""
    monkeypatch.setattr(logging.getLogger("medsft"), "propagate", True)
    caplog.set_level(logging.INFO, logger="medsft")
    return caplog


@pytest.fixture(scope="module")
def generator(thinking_model):
    from medsft.generate import load_generator

    return load_generator(thinking_model)


class RecordingStream:
    """A stdout stand-in that records each write, to see that output arrives piece by piece."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.writes)


def test_stream_answer_prints_reasoning_then_answer_incrementally(generator):
    out = RecordingStream()
    messages = [{"role": "user", "content": "头痛怎么办？"}]
    answer = infer.stream_answer(generator, messages, GenerationSettings.greedy(max_new_tokens=64), out)
    assert answer == THINKING_REPLY_ANSWER
    text = out.text
    assert text.index(infer.REASONING_HEADER) < text.index(THINKING_REPLY_REASONING)
    assert text.index(THINKING_REPLY_REASONING) < text.index(infer.ANSWER_HEADER) < text.index(answer)
    assert not any(tag in text for tag in THINK_TAGS)
    reasoning_pieces = [w for w in out.writes if w and w in THINKING_REPLY_REASONING]
    answer_pieces = [w for w in out.writes if w and w in THINKING_REPLY_ANSWER]
    assert len(reasoning_pieces) > 3 and len(answer_pieces) > 3  # streamed, not printed at once


def test_cli_question_streams_to_stdout(thinking_model, capsys, medsft_log):
    args = ["--model", str(thinking_model), "-q", "头痛怎么办？", "--greedy", "--max-new-tokens", "64"]
    code = infer.main(args)
    captured = capsys.readouterr()
    assert code == 0
    assert infer.REASONING_HEADER in captured.out and infer.ANSWER_HEADER in captured.out
    assert THINKING_REPLY_REASONING in captured.out
    assert captured.out.rstrip().endswith(THINKING_REPLY_ANSWER)
    assert str(thinking_model) in medsft_log.text and str(thinking_model) not in captured.out  # a log line


def test_cli_no_think_has_no_reasoning_header(thinking_model, capsys):
    code = infer.main(
        ["--model", str(thinking_model), "-q", "你好", "--no-think", "--greedy", "--max-new-tokens", "8"]
    )
    out = capsys.readouterr().out
    assert code == 0 and infer.REASONING_HEADER not in out


def test_cli_rejects_empty_and_overlong_questions(thinking_model):
    with pytest.raises(infer.InferenceError, match="empty"):
        infer.main(["--model", str(thinking_model), "-q", "   "])
    with pytest.raises(infer.InferenceError, match="too long"):
        infer.main(["--model", str(thinking_model), "-q", "痛" * 9000])  # tiny model context: 8192
    with pytest.raises(GenerationError, match="needs a GPU"):
        infer.main(["--model", str(thinking_model), "-q", "你好", "--backend", "vllm", "--device", "cpu"])
    with pytest.raises(GenerationError, match="temperature"):
        infer.main(["--model", str(thinking_model), "-q", "你好", "--temperature", "0"])


def test_file_mode_writes_one_record_per_line(thinking_model, tmp_path, capsys, medsft_log):
    lines = [
        json.dumps({"id": "a", "question": "头痛怎么办？"}, ensure_ascii=False),
        "this is not json",
        json.dumps({"question": "   "}),
        json.dumps({"messages": [{"role": "user", "content": "高血压吃什么药"}]}, ensure_ascii=False),
        "",
        json.dumps({"messages": [{"role": "assistant", "content": "x"}]}),
        json.dumps({"id": 7, "question": "痛" * 9000}, ensure_ascii=False),
        json.dumps(["a list"]),
    ]
    lines += [
        json.dumps({"id": f"q{i}", "question": f"问题{i}：发烧怎么办？"}, ensure_ascii=False)
        for i in range(11)
    ]
    source = tmp_path / "questions.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "answers.jsonl"
    args = ["--model", str(thinking_model), "--file", str(source), "--output", str(output), "--greedy"]
    assert infer.main([*args, "--max-new-tokens", "48", "--batch-size", "2"]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [record["line"] for record in records] == list(range(1, len(lines) + 1))
    errors = {record["line"] for record in records if "error" in record}
    assert errors == {2, 3, 5, 6, 7, 8}
    assert "--max-new-tokens" in records[6]["error"] and records[6]["id"] == 7
    answered = [record for record in records if "error" not in record]
    assert len(answered) == 13
    assert all(record["answer"] and record["reasoning"] for record in answered)
    assert records[0]["id"] == "a" and records[0]["answer"] == THINKING_REPLY_ANSWER
    assert [record["id"] for record in records[8:]] == [f"q{i}" for i in range(11)]
    assert "answering" in capsys.readouterr().err  # tqdm bar on stderr
    assert f"wrote {len(lines)} lines" in medsft_log.text and "6 errors" in medsft_log.text


def test_missing_file_and_missing_model(tmp_path):
    with pytest.raises(infer.InferenceError, match="does not exist"):
        infer.main(["--model", str(tmp_path), "--file", str(tmp_path / "none.jsonl")])
    with pytest.raises(ModelSourceError, match="not a folder"):
        infer.main(["--model", str(tmp_path / "no-such-dir"), "-q", "x"])


def test_newest_final_model(tmp_path):
    with pytest.raises(ModelSourceError, match="No trained model"):
        newest_final_model(tmp_path)
    for name, age in (("old", 100), ("new", 0), ("half", 50)):
        final = tmp_path / name / "final"
        final.mkdir(parents=True)
        (final / "config.json").write_text("{}")
        stamp = time.time() - age
        os.utime(final / "config.json", (stamp, stamp))
    (tmp_path / "unfinished" / "final").mkdir(parents=True)  # no config.json: not a model
    assert newest_final_model(tmp_path) == tmp_path / "new" / "final"
