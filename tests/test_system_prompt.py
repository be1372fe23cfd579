"""The system prompt a model is trained with: set on a conversation, recorded in the model's folder, read
back by what uses the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medsft.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    build_messages,
    leading_system_prompt,
    replace_system_turn,
)
from medsft.errors import MedsftError
from medsft.trained_prompt import (
    TRAINING_RECORD,
    TrainingRecordError,
    trained_system_prompt,
    write_trained_system_prompt,
)

CONVERSATION = build_messages("头痛怎么办？", "先问诱因。", "多休息。")
USER, ASSISTANT = CONVERSATION[1], CONVERSATION[2]


def test_replace_system_turn_replaces_adds_or_removes_the_leading_one():
    system = {"role": "system", "content": "新提示"}
    assert replace_system_turn(CONVERSATION, "新提示") == [system, USER, ASSISTANT]
    assert replace_system_turn([USER, ASSISTANT], "新提示") == [system, USER, ASSISTANT]
    assert replace_system_turn(CONVERSATION, "") == [USER, ASSISTANT]
    assert CONVERSATION[0]["content"] == DEFAULT_SYSTEM_PROMPT  # the input is left as it was


def test_a_system_turn_after_the_first_message_cannot_be_replaced():
    with pytest.raises(ValueError, match="system turn after its first message"):
        replace_system_turn([USER, CONVERSATION[0], ASSISTANT], "新提示")


def test_leading_system_prompt():
    assert leading_system_prompt(CONVERSATION) == DEFAULT_SYSTEM_PROMPT
    assert leading_system_prompt([USER, ASSISTANT]) == ""


@pytest.mark.parametrize("prompt", ["你是一名全科医生。", "", None])
def test_a_recorded_system_prompt_reads_back(tmp_path, prompt):
    write_trained_system_prompt(tmp_path, prompt)
    assert json.loads((tmp_path / TRAINING_RECORD).read_text(encoding="utf-8")) == {"system_prompt": prompt}
    assert trained_system_prompt(tmp_path) == prompt
    assert trained_system_prompt(str(tmp_path)) == prompt


def test_a_model_folder_without_a_record_has_no_trained_prompt(tmp_path):
    assert trained_system_prompt(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "cannot be read"), ('{"system_prompt": 3}', "expected"), ("[1]", "expected")],
)
def test_a_damaged_record_is_a_clear_error(tmp_path, text, message):
    (tmp_path / TRAINING_RECORD).write_text(text, encoding="utf-8")
    with pytest.raises(TrainingRecordError, match=message) as raised:
        trained_system_prompt(tmp_path)
    assert isinstance(raised.value, MedsftError) and str(tmp_path / TRAINING_RECORD) in str(raised.value)


def test_infer_demo_and_serve_ask_with_the_trained_prompt_by_default(tmp_path, thinking_model, monkeypatch):
    from medsft import infer
    from medsft.options import system_prompt_for

    model = Path(shutil.copytree(thinking_model, tmp_path / "model"))
    write_trained_system_prompt(model, "你是儿科医生。")
    assert system_prompt_for(model, None) == "你是儿科医生。"
    assert system_prompt_for(model, "") == "" and system_prompt_for(model, "别的") == "别的"  # as given
    assert system_prompt_for(thinking_model, None) == DEFAULT_SYSTEM_PROMPT  # no record: medsft's default
    write_trained_system_prompt(model, "")
    assert system_prompt_for(model, None) == ""  # trained without a system turn: none added
    write_trained_system_prompt(model, "你是儿科医生。")
    asked = []
    monkeypatch.setattr(
        infer, "stream_answer", lambda engine, messages, settings, out: asked.append(messages)
    )
    assert infer.main(["--model", str(model), "-q", "孩子发烧怎么办？"]) == 0
    assert asked[0][0] == {"role": "system", "content": "你是儿科医生。"}
