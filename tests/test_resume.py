"""Resume edge cases: a finished run is left alone, --resume_from_checkpoint is honoured, a damaged checkpoint
is named and skipped for the newest intact one."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from transformers import TrainerCallback

from medsft import train
from medsft.checkpoint import CheckpointError, checkpoint_damage, load_weights, trained_to_the_end
from medsft.cli import run_command
from medsft.model import build_tiny_qwen3
from medsft.recipe import load_recipe


def losses(log_history: list[dict]) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}


def run_card(output_dir: Path) -> dict:
    return json.loads((output_dir / "run_card.json").read_text(encoding="utf-8"))


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: (content hash, modification time)."""
    return {
        path.relative_to(folder).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def medsft_train(argv: list[str]) -> int:
    return run_command("train", train.main, ["--recipe", "smoke", "--report_to", "none", *argv])


def smoke_overrides(output_dir: Path, data: Path, *more: str) -> list[str]:
    return ["--output_dir", str(output_dir), "--dataset", str(data), "--report_to", "none", *more]


class StepCounter(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


@pytest.fixture
def finished_run(smoke_run, tmp_path) -> Path:
    """A private copy of the finished smoke run (8 of 8 steps, checkpoint-4, checkpoint-8, final/)."""
    return Path(shutil.copytree(smoke_run, tmp_path / "run"))


@pytest.fixture
def no_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded")

    monkeypatch.setattr(train, "load_tokenizer_and_model_dir", fail)
    monkeypatch.setattr(train, "load_model", fail)


@pytest.fixture(autouse=True)
def medsft_logger_restored():
    """run_command points the medsft logger at this test's stderr; later tests must not write to it."""
    logger = logging.getLogger("medsft")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


@pytest.fixture
def train_log(caplog):
    """Records of the medsft.train logger (the cli sets it not to propagate to the root logger)."""
    logger = logging.getLogger("medsft")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="medsft")
    yield caplog
    logger.removeHandler(caplog.handler)


# ---------------------------------------------------------------- a finished run


def test_resume_of_a_finished_run_changes_nothing(finished_run, smoke_data, capsys, no_model_loading):
    before = snapshot(finished_run)
    code = medsft_train(smoke_overrides(finished_run, smoke_data, "--resume"))
    assert code == 0
    assert snapshot(finished_run) == before
    err = capsys.readouterr().err
    assert "is complete" in err and "step 8 of 8 (checkpoint-8)" in err and "--max_steps" in err


def test_resume_of_a_finished_run_with_more_steps_trains_on(finished_run, smoke_data):
    recipe = load_recipe("smoke", smoke_overrides(finished_run, smoke_data, "--max_steps", "9"))
    checkpoint, _ = train.preflight(recipe, resume=True)
    assert checkpoint == finished_run / "checkpoint-8"
    assert not trained_to_the_end(checkpoint, recipe.sft)


def test_resume_of_a_finished_run_without_final_writes_it_without_training(finished_run, smoke_data):
    shutil.rmtree(finished_run / "final")
    (finished_run / "run_card.json").unlink()
    checkpoints = {name: snapshot(finished_run / name) for name in ("checkpoint-4", "checkpoint-8")}
    counter = StepCounter()
    recipe = load_recipe("smoke", smoke_overrides(finished_run, smoke_data, "--val_questions", "0"))
    train.run(recipe, resume=True, callbacks=[counter])

    assert counter.steps == 0
    assert {name: snapshot(finished_run / name) for name in checkpoints} == checkpoints
    card = run_card(finished_run)
    assert card["global_step"] == 8 and card["resumed_from"] == str(finished_run / "checkpoint-8")
    assert sorted(losses(card["log_history"])) == list(range(1, 9))
    from safetensors.torch import load_file

    final = load_file(finished_run / "final" / "model.safetensors")
    trained = load_file(finished_run / "checkpoint-8" / "model.safetensors")
    assert final.keys() == trained.keys()
    assert all(final[name].equal(trained[name]) for name in final)


def test_resume_of_a_finished_run_with_a_truncated_final_writes_it_again(finished_run, smoke_data, train_log):
    weights = finished_run / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    counter = StepCounter()
    recipe = load_recipe("smoke", smoke_overrides(finished_run, smoke_data, "--val_questions", "0"))
    train.run(recipe, resume=True, callbacks=[counter])
    assert counter.steps == 0
    assert "final: model.safetensors is truncated or unreadable" in train_log.text
    from safetensors.torch import load_file

    final = load_file(weights)
    trained = load_file(finished_run / "checkpoint-8" / "model.safetensors")
    assert all(final[name].equal(trained[name]) for name in trained)


def test_temporaries_of_a_killed_save_are_removed_and_named_at_the_next_start(
    finished_run, smoke_data, capsys, no_model_loading
):
    orphans = [finished_run / "checkpoint-8" / ".tmpAb12Cd", finished_run / "final" / ".tmpXy34Zw"]
    for orphan in orphans:
        orphan.write_bytes(b"\0" * 1024)  # what safetensors leaves when a save is killed before its rename
    assert medsft_train(smoke_overrides(finished_run, smoke_data, "--resume")) == 0
    err = capsys.readouterr().err
    for orphan in orphans:
        assert not orphan.exists()
        assert f"removed {orphan}, a temporary file left by an interrupted save" in err
    assert "is complete" in err  # the run itself is still whole


def test_a_second_run_on_the_same_output_folder_is_refused(smoke_data, tmp_path, capsys, no_model_loading):
    from medsft.atomic_folder import folder_lock

    output_dir = tmp_path / "run"
    with folder_lock(output_dir):
        code = medsft_train(smoke_overrides(output_dir, smoke_data, "--max_steps", "1"))
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "another run is writing run" in lines[0], lines
    assert not output_dir.exists()  # the refused run created nothing


def test_a_run_that_fails_before_writing_leaves_no_empty_folder(smoke_data, tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise train.PreflightError("the model cannot be loaded")

    monkeypatch.setattr(train, "load_model", fail)
    output_dir = tmp_path / "fresh"
    assert medsft_train(smoke_overrides(output_dir, smoke_data, "--max_steps", "1")) == 2
    assert not output_dir.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- --resume_from_checkpoint PATH


def test_resume_from_checkpoint_path_is_honoured(smoke_run, smoke_data, tmp_path):
    out = tmp_path / "continued"
    source = smoke_run / "checkpoint-4"
    overrides = smoke_overrides(out, smoke_data, "--resume_from_checkpoint", str(source))
    counter = StepCounter()
    train.run(
        load_recipe("smoke", [*overrides, "--max_steps", "5", "--val_questions", "0"]), callbacks=[counter]
    )

    card = run_card(out)
    assert counter.steps == 1 and card["global_step"] == 5
    assert card["resumed_from"] == str(source)
    uninterrupted = losses(run_card(smoke_run)["log_history"])
    assert losses(card["log_history"]) == {step: uninterrupted[step] for step in range(1, 6)}


@pytest.mark.parametrize(
    ("make_path", "message"),
    [
        (lambda run: run / "checkpoint-404", "does not exist"),
        (lambda run: run / "final", "not a training checkpoint"),
    ],
)
def test_resume_from_checkpoint_path_is_validated(
    smoke_run, smoke_data, tmp_path, capsys, no_model_loading, make_path, message
):
    path = make_path(smoke_run)
    code = medsft_train(smoke_overrides(tmp_path / "o", smoke_data, "--resume_from_checkpoint", str(path)))
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert str(path) in line and message in line


# ---------------------------------------------------------------- damaged checkpoints


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "name", "problem"),
    [
        (truncate, "model.safetensors", "is truncated or unreadable"),
        (truncate, "optimizer.pt", "is truncated or unreadable"),
        (truncate, "trainer_state.json", "is truncated or unreadable"),
        (truncate, "scheduler.pt", "is truncated or unreadable"),
        (Path.unlink, "optimizer.pt", "is missing"),
        (Path.unlink, "model.safetensors", "is missing"),
    ],
)
def test_a_damaged_newest_checkpoint_is_named_and_skipped(
    smoke_run, smoke_data, tmp_path, train_log, damage, name, problem
):
    out = tmp_path / "run"
    for step in (4, 8):
        shutil.copytree(smoke_run / f"checkpoint-{step}", out / f"checkpoint-{step}")
    damage(out / "checkpoint-8" / name)
    recipe = load_recipe("smoke", smoke_overrides(out, smoke_data))
    checkpoint, _ = train.preflight(recipe, resume=True)
    assert checkpoint == out / "checkpoint-4"
    assert f"checkpoint-8: {name} {problem}" in train_log.text
    assert "resuming from checkpoint-4" in train_log.text


def test_no_intact_checkpoint_is_a_clear_error(smoke_run, smoke_data, tmp_path, capsys, no_model_loading):
    out = tmp_path / "run"
    for step in (4, 8):
        shutil.copytree(smoke_run / f"checkpoint-{step}", out / f"checkpoint-{step}")
    truncate(out / "checkpoint-4" / "optimizer.pt")
    truncate(out / "checkpoint-8" / "model.safetensors")
    assert medsft_train(smoke_overrides(out, smoke_data, "--resume")) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "no intact checkpoint" in line
    assert "checkpoint-8: model.safetensors is truncated" in line
    assert "checkpoint-4: optimizer.pt is truncated" in line


def test_resume_past_a_truncated_checkpoint_matches_an_uninterrupted_run(smoke_run, finished_run, smoke_data):
    shutil.rmtree(finished_run / "final")
    truncate(finished_run / "checkpoint-8" / "optimizer.pt")
    recipe = load_recipe("smoke", smoke_overrides(finished_run, smoke_data, "--val_questions", "0"))
    train.run(recipe, resume=True)

    card = run_card(finished_run)
    assert card["resumed_from"] == str(finished_run / "checkpoint-4") and card["global_step"] == 8
    assert losses(card["log_history"]) == losses(run_card(smoke_run)["log_history"])
    assert checkpoint_damage(finished_run / "checkpoint-8", needs_optimizer=True) is None  # saved anew


# ---------------------------------------------------------------- loading a finished run's weights


def test_a_lora_checkpoint_loads_into_the_active_adapter(tmp_path, qwen3_tokenizer):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    def lora_model(init_lora_weights: bool):
        config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=init_lora_weights)
        return get_peft_model(build_tiny_qwen3(qwen3_tokenizer, seed=1), config)

    trained = lora_model(init_lora_weights=False)  # random, non-zero adapter weights
    trained.save_pretrained(tmp_path)
    fresh = lora_model(init_lora_weights=True)
    before = {name: tensor.clone() for name, tensor in get_peft_model_state_dict(fresh).items()}
    load_weights(fresh, tmp_path)
    loaded, saved = get_peft_model_state_dict(fresh), get_peft_model_state_dict(trained)
    assert loaded.keys() == saved.keys() and all(loaded[name].equal(saved[name]) for name in saved)
    assert not all(before[name].equal(saved[name]) for name in saved)


@pytest.mark.parametrize("shard_size", ["5GB", "10MB"], ids=["one file", "shards"])
def test_full_weights_load_from_one_file_or_shards(tmp_path, qwen3_tokenizer, shard_size):
    trained = build_tiny_qwen3(qwen3_tokenizer, seed=1)
    trained.save_pretrained(tmp_path, max_shard_size=shard_size)
    assert (tmp_path / "model.safetensors.index.json").is_file() == (shard_size == "10MB")
    fresh, saved = build_tiny_qwen3(qwen3_tokenizer, seed=2), trained.state_dict()
    assert not all(tensor.equal(saved[name]) for name, tensor in fresh.state_dict().items())
    load_weights(fresh, tmp_path)
    assert all(tensor.equal(saved[name]) for name, tensor in fresh.state_dict().items())


@pytest.mark.parametrize("shard_size", ["5GB", "10MB"], ids=["one file", "shards"])
def test_weights_of_another_architecture_are_a_clear_error(tmp_path, qwen3_tokenizer, shard_size):
    build_tiny_qwen3(qwen3_tokenizer, num_layers=2).save_pretrained(tmp_path, max_shard_size=shard_size)
    with pytest.raises(CheckpointError, match=r"does not match the model: missing \['model.layers.2"):
        load_weights(build_tiny_qwen3(qwen3_tokenizer, num_layers=3), tmp_path)


# ---------------------------------------------------------------- Ctrl-C

# `medsft train` in a real process that sends itself SIGINT at a chosen moment, SwanLab logging offline (its
# own Ctrl-C handler is part of what is tested): mid-run after step 5, or as final/ starts being written.
INTERRUPTING_TRAIN = """
import os, signal, sys
from medsft import cli, train

def interrupt():
    os.kill(os.getpid(), signal.SIGINT)

moment = sys.argv[1]
if moment == "mid-run":
    on_step_end = train.RankReport.on_step_end
    def step_end(self, args, state, control, **kwargs):
        on_step_end(self, args, state, control, **kwargs)
        if state.global_step == 5:
            interrupt()
    train.RankReport.on_step_end = step_end
else:
    save_final = train.save_final
    def interrupted_save(trainer, recipe, *rest):
        save_final(trainer, recipe, *rest)
        interrupt()  # final/ is on disk; the signal lands before the run card
    train.save_final = interrupted_save
sys.exit(cli.main(["train", "--recipe", "smoke", *sys.argv[2:]]))
"""


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (
            "mid-run",
            "interrupted while training at step 5 of 8 (final/ and run_card.json not written); "
            "--resume continues from {out}/checkpoint-4.",
        ),
        (
            "final-save",
            "interrupted while writing final/ at step 8 of 8 (final/ and run_card.json are not "
            "complete); --resume continues from {out}/checkpoint-8.",
        ),
    ],
)
def test_ctrl_c_in_train_is_one_line_exit_130_and_resume_finishes(tmp_path, smoke_data, moment, expected):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "SWANLAB_MODE": "offline", "MEDSFT_DEBUG": ""}
    env.pop("SWANLAB_LOG_DIR", None)
    argv = ["--output_dir", str(out), "--dataset", str(smoke_data), "--val_questions", "0"]
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTING_TRAIN, moment, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 130, output
    assert "Traceback" not in output and "active Run" not in output, output
    lines = [line for line in result.stderr.splitlines() if "interrupted" in line]
    assert lines == [f"medsft train: {expected.format(out=out)}"], output
    assert not (out / "run_card.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "medsft.cli", "train", "--recipe", "smoke", *argv, "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert run_card(out)["global_step"] == 8
