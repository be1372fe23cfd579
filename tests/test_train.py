"""Training: assistant-only loss, smoke outputs, SwanLab offline logs, resume after SIGKILL."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsft import run_card as run_card_module
from medsft import train
from medsft.chat_format import (
    DEFAULT_SYSTEM_PROMPT,
    END_OF_TURN,
    assistant_content,
    build_messages,
    special_token_ids,
)
from medsft.checkpoint import newest_checkpoint
from medsft.cli import run_command
from medsft.jsonl import read_jsonl
from medsft.model import build_tiny_qwen3, original_qwen3_chat_template
from medsft.paths import sample_data_file
from medsft.recipe import load_recipe
from medsft.trained_prompt import trained_system_prompt

SAMPLE_DATA = sample_data_file()
THINK, ANSWER = "先考虑常见病因，再看危险信号。", "多休息、补液；持续高热请就医。"
GP_PROMPT = "你是一名全科医生。"
ASSISTANT_TURN = assistant_content(THINK, ANSWER) + END_OF_TURN + "\n"

# Runs the smoke recipe and blocks right after the first checkpoint is complete, so the parent can SIGKILL it.
PAUSE_AFTER_FIRST_SAVE = """
import os, sys, time
from transformers import TrainerCallback
from medsft.recipe import load_recipe
from medsft.train import run

class PauseAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        with open(os.environ["SAVED_MARKER"], "w") as marker:
            marker.write(str(state.global_step))
        time.sleep(900)

run(load_recipe("smoke", sys.argv[1:]), callbacks=[PauseAfterFirstSave()])
"""


def losses(log_history: list[dict], key: str = "loss", up_to: int | None = None) -> dict[int, float]:
    return {e["step"]: e[key] for e in log_history if key in e and (up_to is None or e["step"] <= up_to)}


def run_card(output_dir: Path) -> dict:
    return json.loads((output_dir / "run_card.json").read_text(encoding="utf-8"))


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsft.train", "--recipe", "smoke", *args]


def offline_env() -> dict[str, str]:
    env = {**os.environ, "SWANLAB_MODE": "offline"}
    env.pop("SWANLAB_LOG_DIR", None)
    return env


# ---------------------------------------------------------------- assistant-only loss


def trained_and_masked(tokenizer, tmp_path) -> tuple[str, str]:
    """(text of the tokens with a loss, text of those without) for one row, via the real trainer set-up."""
    recipe = load_recipe("smoke", ["--output_dir", str(tmp_path), "--report_to", "none"])
    row = {"messages": build_messages("发烧39度怎么办？", THINK, ANSWER)}
    data = train.RunData(train_rows=[row], val_rows=[row], files={})
    trainer = train.build_trainer(recipe, build_tiny_qwen3(tokenizer), tokenizer, data)
    example = trainer.train_dataset[0]
    ids, labels = example["input_ids"], example["labels"]
    positions = [k for k, label in enumerate(labels) if label != -100]
    assert positions == list(range(positions[0], len(ids)))  # one contiguous span, up to the end
    trained = [ids[k] for k in positions]
    masked = [i for i, label in zip(ids, labels, strict=True) if label == -100]
    return tokenizer.decode(trained), tokenizer.decode(masked)


def test_only_the_assistant_turn_is_trained_real_tokenizer(qwen3_tokenizer, tmp_path):
    trained, masked = trained_and_masked(qwen3_tokenizer, tmp_path)
    assert trained == ASSISTANT_TURN
    assert masked == (
        "<|im_start|>system\n你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。<|im_end|>\n"
        "<|im_start|>user\n发烧39度怎么办？<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = qwen3_tokenizer(ASSISTANT_TURN, add_special_tokens=False)["input_ids"]
    tokens = special_token_ids(qwen3_tokenizer)
    assert ids[0] == tokens["think_open"] and tokens["think_close"] in ids  # single tokens, not pieces


def test_tiny_model_trains_with_the_bundled_real_tokenizer(tmp_path):
    recipe = load_recipe("smoke", ["--output_dir", str(tmp_path)])
    tokenizer, model_dir = train.load_tokenizer_and_model_dir(recipe)
    assert model_dir is None and len(tokenizer) == 151669  # Qwen3's whole vocabulary, special tokens included
    trained, masked = trained_and_masked(tokenizer, tmp_path)
    assert trained == ASSISTANT_TURN
    assert masked.endswith("<|im_start|>assistant\n") and THINK not in masked


def test_bundled_tokenizer_is_the_real_one(qwen3_tokenizer):
    from medsft.model import load_bundled_tokenizer

    bundled = load_bundled_tokenizer()
    text = build_messages("发烧39度怎么办？", THINK, ANSWER)
    assert bundled.apply_chat_template(text) == qwen3_tokenizer.apply_chat_template(text)
    assert special_token_ids(bundled) == special_token_ids(qwen3_tokenizer)


# ---------------------------------------------------------------- one smoke run, checked from every side


def test_smoke_run_writes_checkpoints_final_model_plot_and_card(smoke_run, smoke_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {p.name for p in smoke_run.glob("checkpoint-*")} == {"checkpoint-4", "checkpoint-8"}
    final = smoke_run / "final"
    assert (final / "model.safetensors").is_file() and (final / "generation_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer.chat_template == original_qwen3_chat_template()  # not TRL's training variant
    assert not re.search(r"{%-?\s*generation\s*-?%}", tokenizer.chat_template)  # no training markers
    model = AutoModelForCausalLM.from_pretrained(final)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "头痛怎么办？"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]

    assert (smoke_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = run_card(smoke_run)
    train_losses = losses(card["log_history"])
    assert sorted(train_losses) == list(range(1, 9))
    assert train_losses[8] < train_losses[1]  # it learns
    assert sorted(losses(card["log_history"], "eval_loss")) == [4, 8]
    assert card["final"]["train_loss"] == train_losses[8] and math.isfinite(card["final"]["eval_loss"])
    assert card["data"]["train"]["sha256"] == run_card_module.sha256(smoke_data / "train.jsonl")
    assert card["data"]["train"]["rows_used"] == len(read_jsonl(smoke_data / "train.jsonl"))
    assert card["seed"] == 42 and card["global_step"] == 8 and card["wall_time_s"] > 0
    assert card["versions"]["trl"] and card["git"]["sha"]
    assert card["config"]["sft"]["learning_rate"] == 5e-3
    assert card["config"]["model"]["model_name_or_path"] == "tiny"
    # the sample rows' own system turn (the recipe sets none): recorded, and carried by final/
    assert card["system_prompt"] == DEFAULT_SYSTEM_PROMPT == trained_system_prompt(final)

    answers = read_jsonl(smoke_run / "val_answers.jsonl")
    assert len(answers) == 2 and all(a["question"] and a["output"] for a in answers)


def read_swanlab_records(swanlog: Path) -> tuple[dict[str, dict[int, float]], set[str]]:
    """Scalars (key -> step -> value) and media keys from SwanLab's offline run file."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    [run_file] = swanlog.glob("run-*/run-*.swanlab")
    reader, scalars, media = DataStoreReader(), {}, set()
    reader.open(run_file)
    while (data := reader.scan()) is not None:
        record = Record()
        record.ParseFromString(data)
        if record.HasField("scalar"):
            scalars.setdefault(record.scalar.key, {})[record.scalar.step] = record.scalar.value.number
        if record.HasField("media"):
            media.add(record.media.key)
    reader.close()
    return scalars, media


def test_swanlab_offline_logs_are_on_disk(smoke_run):
    scalars, media = read_swanlab_records(smoke_run / "swanlog")
    history = run_card(smoke_run)["log_history"]
    assert scalars["train/loss"] == pytest.approx(losses(history))
    assert scalars["eval/loss"] == pytest.approx(losses(history, "eval_loss"))
    assert "val_answers" in media  # the validation questions and answers, as text
    config = next(smoke_run.glob("swanlog/run-*/files/config.yaml")).read_text(encoding="utf-8")
    assert "medsft-smoke" in config or "learning_rate" in config


# ---------------------------------------------------------------- resume after SIGKILL, determinism


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory, smoke_data) -> tuple[Path, list[dict]]:
    """A smoke run SIGKILLed once its first checkpoint is complete, then resumed with --resume."""
    out = tmp_path_factory.mktemp("killed")
    marker = out.parent / f"{out.name}.saved"
    args = ["--output_dir", str(out), "--dataset", str(smoke_data), "--val_questions", "0"]
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AFTER_FIRST_SAVE, *args],
        env={**offline_env(), "SAVED_MARKER": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    process.kill()  # SIGKILL: no clean-up, like a crash or a pre-empted cloud box
    _, stderr = process.communicate()
    assert marker.exists(), f"the run never saved a checkpoint:\n{stderr[-3000:]}"
    assert process.returncode == -9 and not (out / "final").exists()
    before_kill = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]

    resumed = subprocess.run(
        train_command(*args, "--resume"), env=offline_env(), capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out, before_kill


def test_same_recipe_and_seed_give_identical_losses(smoke_run, killed_then_resumed):
    _, before_kill = killed_then_resumed  # steps 1-4 of a separate process with the same recipe and seed
    reference = run_card(smoke_run)["log_history"]
    assert losses(before_kill) == losses(reference, up_to=4)
    assert losses(before_kill, "eval_loss") == losses(reference, "eval_loss", up_to=4)


def test_resume_after_sigkill_matches_an_uninterrupted_run(smoke_run, killed_then_resumed):
    out, _ = killed_then_resumed
    card, reference = run_card(out), run_card(smoke_run)
    assert card["resumed_from"].endswith("checkpoint-4")
    assert losses(card["log_history"]) == losses(reference["log_history"])  # steps 5-8 trained after resuming
    assert card["final"] == reference["final"]
    assert (out / "final" / "model.safetensors").is_file()


# ---------------------------------------------------------------- LoRA, raw source converted on the fly


def test_lora_from_a_raw_source_is_merged_into_a_full_model(tmp_path, qwen3_tokenizer):
    from safetensors import safe_open

    out = tmp_path / "lora"
    overrides = ["--output_dir", str(out), "--raw_source", str(SAMPLE_DATA), "--use_peft", "--lora_r", "4"]
    overrides += ["--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none"]
    overrides += ["--system_prompt", GP_PROMPT]
    train.run(load_recipe("smoke", [*overrides, "--val_questions", "1", "--val_max_new_tokens", "4"]))

    converted = json.loads((out / "data" / "report.json").read_text(encoding="utf-8"))  # `medsft data`'s code
    assert converted["rows"]["read"] == len(SAMPLE_DATA.read_text(encoding="utf-8").splitlines())
    assert (out / "adapter" / "adapter_config.json").is_file()
    with safe_open(out / "final" / "model.safetensors", "pt") as merged:
        names = set(merged.keys())
        q_proj = merged.get_tensor("model.layers.0.self_attn.q_proj.weight")
    base = build_tiny_qwen3(qwen3_tokenizer, seed=42)
    assert names == set(base.state_dict()) - {"lm_head.weight"}  # a plain Qwen3: no LoRA tensors left
    assert not q_proj.equal(base.model.layers[0].self_attn.q_proj.weight.detach())  # the adapter is merged in
    assert len(read_jsonl(out / "val_answers.jsonl")) == 1  # the merged model reloads and answers
    converted_rows = read_jsonl(out / "data" / "train.jsonl")
    assert {row["messages"][0]["content"] for row in converted_rows} == {GP_PROMPT}
    assert run_card(out)["system_prompt"] == GP_PROMPT == trained_system_prompt(out / "final")


# ---------------------------------------------------------------- data rules at training start


def test_overlong_rows_are_rejected_not_truncated(smoke_data, qwen3_tokenizer, tmp_path):
    from medsft.conversion import conversation_token_length

    overrides = ["--output_dir", str(tmp_path), "--dataset", str(smoke_data), "--max_length", "240"]
    overrides += ["--eval_strategy", "no"]  # the 3 validation rows may all be longer
    recipe = load_recipe("smoke", overrides)
    data = train.load_data(recipe, qwen3_tokenizer, train.data_files(recipe))
    rows = read_jsonl(smoke_data / "train.jsonl")
    lengths = [conversation_token_length(qwen3_tokenizer, row["messages"]) for row in rows]
    assert data.overlong["train"] == [(i, n) for i, n in enumerate(lengths) if n > 240] != []
    assert data.train_rows == [row for row, n in zip(rows, lengths, strict=True) if n <= 240]


def test_resume_skips_a_checkpoint_interrupted_mid_save(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoint-8"


# ---------------------------------------------------------------- clear errors before the model loads


def medsft_train(argv: list[str]) -> int:
    """`medsft train ARGV` under the command's error contract; returns its exit code."""
    return run_command("train", train.main, argv)


@pytest.fixture
def no_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model source was touched before the error")

    monkeypatch.setattr(train, "load_tokenizer_and_model_dir", fail)
    monkeypatch.setattr(train, "load_model", fail)


def test_missing_data_file(tmp_path, capsys, no_model_loading):
    code = medsft_train(
        ["--recipe", "smoke", "--output_dir", str(tmp_path / "o"), "--dataset", str(tmp_path / "none")]
    )
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()  # one line: what failed and what to do
    assert line.startswith(f"medsft train: Data file {tmp_path / 'none' / 'train.jsonl'} is missing")
    assert "medsft data --src" in line


def test_unwritable_output_dir(tmp_path, capsys, smoke_data, no_model_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = medsft_train(
        ["--recipe", "smoke", "--output_dir", str(blocker / "out"), "--dataset", str(smoke_data)]
    )
    assert code == 2
    assert f"Output folder {blocker / 'out'} is not writable" in capsys.readouterr().err


def test_bad_recipe(tmp_path, capsys, no_model_loading):
    code = medsft_train(["--recipe", "smoke", "--lerning_rate", "1e-4"])
    assert code == 2
    assert "Unknown key 'lerning_rate'" in capsys.readouterr().err


def test_resume_without_checkpoint(tmp_path, capsys, smoke_data, no_model_loading):
    code = medsft_train(
        ["--recipe", "smoke", "--output_dir", str(tmp_path), "--dataset", str(smoke_data), "--resume"]
    )
    assert code == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_existing_checkpoints_are_not_overwritten_silently(tmp_path, capsys, smoke_data, no_model_loading):
    (tmp_path / "checkpoint-500").mkdir()
    (tmp_path / "checkpoint-500" / "trainer_state.json").write_text("{}")
    args = ["--output_dir", str(tmp_path), "--dataset", str(smoke_data), "--overwrite_output_dir", "false"]
    assert medsft_train(["--recipe", "smoke", *args]) == 2
    assert "already holds checkpoints (newest: checkpoint-500)" in capsys.readouterr().err
    assert (tmp_path / "checkpoint-500").is_dir()


def test_offline_model_source_fails_before_data_and_training(tmp_path, capsys, smoke_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        train, "load_data", lambda *a, **k: pytest.fail("data loaded before the model source")
    )
    args = ["--output_dir", str(tmp_path), "--dataset", str(smoke_data)]
    args += ["--model_name_or_path", "hf:Qwen/Qwen3-1.7B"]
    args += ["--model_cache_dir", str(tmp_path / "cache")]
    assert medsft_train(["--recipe", "smoke", *args]) == 2
    err = capsys.readouterr().err
    assert "Could not get 'hf:Qwen/Qwen3-1.7B'" in err and "MODEL=/path/to/DIR" in err


# ---------------------------------------------------------------- data the run cannot use


def write_rows(folder: Path, train_lines: list[str], val_lines: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(f"{line}\n" for line in train_lines), encoding="utf-8")
    (folder / "val.jsonl").write_text("".join(f"{line}\n" for line in val_lines or []), encoding="utf-8")
    return folder


def test_a_dataset_name_is_a_folder_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSFT_DATA_DIR", str(tmp_path / "processed"))
    recipe = load_recipe("smoke", ["--output_dir", str(tmp_path / "out")])
    assert recipe.medsft.dataset == "sample"
    with pytest.raises(
        train.PreflightError, match=f"Data file {tmp_path / 'processed' / 'sample' / 'train.jsonl'}"
    ):
        train.data_files(recipe)
    write_rows(tmp_path / "processed" / "sample", ["{}"], ["{}"])
    assert train.data_files(recipe)["train"] == tmp_path / "processed" / "sample" / "train.jsonl"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"messages": [', r"train.jsonl, line 2: not valid JSON"),
        ('{"question": "q", "think": "t", "answer": "a"}', r"train.jsonl, line 2: not a chat row"),
        ("[1, 2]", r"train.jsonl, line 2: not a chat row"),
    ],
)
def test_a_bad_row_is_an_error_naming_file_and_line(tmp_path, qwen3_tokenizer, line, message):
    from medsft.errors import MedsftError

    good = json.dumps({"messages": build_messages("头痛怎么办？", THINK, ANSWER)}, ensure_ascii=False)
    folder = write_rows(tmp_path / "data", [good, line])
    recipe = load_recipe("smoke", ["--dataset", str(folder), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(MedsftError, match=message):
        train.load_data(recipe, qwen3_tokenizer, train.data_files(recipe))


def test_every_row_over_long_is_a_clear_error(tmp_path, qwen3_tokenizer):
    row = json.dumps({"messages": build_messages("头痛怎么办？", THINK, ANSWER)}, ensure_ascii=False)
    folder = write_rows(tmp_path / "data", [row, row])
    overrides = ["--dataset", str(folder), "--output_dir", str(tmp_path / "o"), "--max_length", "8"]
    recipe = load_recipe("smoke", [*overrides, "--eval_strategy", "no", "--val_questions", "0"])
    with pytest.raises(train.PreflightError, match="Every row of .*train.jsonl is longer than max_length 8"):
        train.load_data(recipe, qwen3_tokenizer, train.data_files(recipe))


# ---------------------------------------------------------------- the recipe's system_prompt


def smoke_rows_with(smoke_data: Path, tmp_path: Path, tokenizer, *overrides: str) -> train.RunData:
    recipe = load_recipe("smoke", ["--dataset", str(smoke_data), "--output_dir", str(tmp_path), *overrides])
    return train.load_data(recipe, tokenizer, train.data_files(recipe))


def test_the_recipes_system_prompt_is_every_rows_system_turn(smoke_data, qwen3_tokenizer, tmp_path):
    data = smoke_rows_with(smoke_data, tmp_path, qwen3_tokenizer, "--system_prompt", GP_PROMPT)
    originals = read_jsonl(smoke_data / "train.jsonl")
    assert {row["messages"][0]["content"] for row in originals} == {DEFAULT_SYSTEM_PROMPT}
    for row, original in zip(data.train_rows, originals, strict=True):
        assert row["messages"] == [{"role": "system", "content": GP_PROMPT}, *original["messages"][1:]]
    assert all(row["messages"][0]["content"] == GP_PROMPT for row in data.val_rows)
    assert data.system_prompt == GP_PROMPT
    recipe = load_recipe("smoke", ["--output_dir", str(tmp_path), "--report_to", "none"])
    trainer = train.build_trainer(recipe, build_tiny_qwen3(qwen3_tokenizer), qwen3_tokenizer, data)
    text = qwen3_tokenizer.decode(trainer.train_dataset[0]["input_ids"])  # what the model is trained on
    assert f"<|im_start|>system\n{GP_PROMPT}<|im_end|>" in text and DEFAULT_SYSTEM_PROMPT not in text


def test_an_empty_system_prompt_trains_without_a_system_turn(smoke_data, qwen3_tokenizer, tmp_path):
    data = smoke_rows_with(smoke_data, tmp_path, qwen3_tokenizer, "--system_prompt", "")
    assert all([m["role"] for m in row["messages"]] == ["user", "assistant"] for row in data.train_rows)
    assert data.system_prompt == ""


def test_without_a_system_prompt_the_rows_keep_their_own(smoke_data, qwen3_tokenizer, tmp_path):
    assert load_recipe("smoke").medsft.system_prompt is None
    data = smoke_rows_with(smoke_data, tmp_path, qwen3_tokenizer)
    assert data.train_rows == read_jsonl(smoke_data / "train.jsonl")
    assert data.system_prompt == DEFAULT_SYSTEM_PROMPT


def test_rows_with_different_system_prompts_record_none(tmp_path, qwen3_tokenizer):
    rows = [
        json.dumps({"messages": build_messages("头痛怎么办？", THINK, ANSWER, prompt)}, ensure_ascii=False)
        for prompt in (GP_PROMPT, DEFAULT_SYSTEM_PROMPT, "")
    ]
    folder = write_rows(tmp_path / "data", rows, rows)
    assert smoke_rows_with(folder, tmp_path / "o", qwen3_tokenizer).system_prompt is None
    given = smoke_rows_with(folder, tmp_path / "o", qwen3_tokenizer, "--system_prompt", GP_PROMPT)
    assert given.system_prompt == GP_PROMPT


def test_a_system_prompt_that_cannot_take_effect_is_an_error(tmp_path, qwen3_tokenizer):
    good = {"messages": build_messages("头痛怎么办？", THINK, ANSWER)}
    late = {"messages": [good["messages"][1], good["messages"][0], good["messages"][2]]}  # user, system, ...
    folder = write_rows(tmp_path / "data", [json.dumps(row, ensure_ascii=False) for row in (good, late)])
    with pytest.raises(
        train.PreflightError,
        match=r"train.jsonl, line 2: the recipe's system_prompt cannot take effect: it has a system turn "
        r"after its first message",
    ):
        smoke_rows_with(folder, tmp_path / "o", qwen3_tokenizer, "--system_prompt", GP_PROMPT)


def test_the_run_card_has_a_train_loss_when_no_step_loss_was_logged():
    closing = {"train_runtime": 1.9, "train_loss": 11.9, "epoch": 0.07, "step": 2}
    assert run_card_module.final_losses([{"eval_loss": 11.7, "step": 2}, closing])["train_loss"] == 11.9
    logged = [{"loss": 12.0, "step": 1}, {"loss": 11.5, "step": 2}, closing]
    assert run_card_module.final_losses(logged) == {
        "train_loss": 11.5,
        "eval_loss": None,
        "mean_logged_train_loss": 11.75,
    }
