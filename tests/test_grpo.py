"""The GRPO stage end to end on CPU: `stage: grpo` recipes, TRL's GRPOTrainer on real MCQ prompt rows with the
real tokenizer and a tiny random Qwen3, per-reward logging, checkpoints, resume after an interrupt, and a
final/ that the inference engine loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback
from trl import GRPOConfig

from medsft import data
from medsft.chat_format import DEFAULT_SYSTEM_PROMPT
from medsft.recipe import RecipeError, load_recipe
from medsft.train import run
from medsft.trained_prompt import trained_system_prompt
from tests.conftest import require_shared

REWARDS = ("correctness", "format", "length_guard")


@pytest.fixture(scope="module")
def mcq_data(tmp_path_factory) -> Path:
    """A dozen real XMedBench questions as prompt + gold rows (benchmark questions: decontamination off)."""
    rows = json.loads(require_shared("benchmarks/xmedbench_zh/dev_zh.json").read_text(encoding="utf-8"))
    folder = tmp_path_factory.mktemp("mcq")
    source = folder / "questions.jsonl"
    source.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:12]), encoding="utf-8"
    )
    args = ["--kind", "mcq", "--src", str(source), "--out-dir", str(folder), "--name", "rows"]
    assert data.main([*args, "--decontaminate", "none"]) == 0
    return folder / "rows"


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, mcq_data) -> Path:
    """`medsft train --recipe grpo_smoke` for 2 steps in its own process, SwanLab offline."""
    out = tmp_path_factory.mktemp("grpo-run")
    env = {**os.environ, "SWANLAB_MODE": "offline"}
    env.pop("SWANLAB_LOG_DIR", None)
    command = [sys.executable, "-m", "medsft.train", "--recipe", "grpo_smoke", "--output_dir", str(out)]
    command += ["--dataset", str(mcq_data), "--max_steps", "2", "--save_steps", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return out


def test_grpo_recipes_parse_into_grpo_config():
    smoke = load_recipe("grpo_smoke")
    assert isinstance(smoke.sft, GRPOConfig) and smoke.medsft.stage == "grpo"
    assert smoke.sft.chat_template_kwargs == {"enable_thinking": True}
    assert (smoke.sft.num_generations, smoke.sft.max_completion_length) == (4, 24)
    assert smoke.medsft.reward_funcs == list(REWARDS) and smoke.sft.reward_weights == [1.0, 0.2, 1.0]
    sft = load_recipe("smoke")
    assert not isinstance(sft.sft, GRPOConfig) and sft.medsft.stage == "sft"


def test_grpo_recipe_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(RecipeError, match="reward_weights has 2 weights for 3 reward_funcs"):
        load_recipe("grpo_smoke", ["--reward_weights", "1.0", "0.5"])
    with pytest.raises(RecipeError, match="reward_funcs must name rewards among"):
        load_recipe("grpo_smoke", ["--reward_funcs", "accuracy", "--reward_weights", "1.0"])
    with pytest.raises(RecipeError, match="beta 0.04 needs a reference model"):
        load_recipe("grpo_smoke", ["--beta", "0.04"])
    with pytest.raises(RecipeError, match="stage must be one of sft, grpo"):
        load_recipe("grpo_smoke", ["--stage", "ppo"])
    with pytest.raises(RecipeError, match="Unknown key 'assistant_only_loss'"):  # an SFTConfig key
        load_recipe("grpo_smoke", ["--assistant_only_loss", "true"])


def test_grpo_run_logs_each_reward_and_writes_a_final_model_that_loads(grpo_run, mcq_data):
    from medsft.engine import GenerationSettings, load_engine

    assert {p.name for p in grpo_run.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}
    card = json.loads((grpo_run / "run_card.json").read_text(encoding="utf-8"))
    assert card["global_step"] == 2 and card["config"]["medsft"]["stage"] == "grpo"
    steps = [entry for entry in card["log_history"] if "reward" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for name in REWARDS:
        for entry in steps:
            assert {f"rewards/{name}/mean", f"rewards/{name}/std"} <= set(entry)
    # a random model never closes its think block: no answer, no format, the full length penalty
    assert all(entry["rewards/correctness/mean"] == 0.0 for entry in steps)
    assert all(entry["rewards/length_guard/mean"] == -1.0 for entry in steps)
    assert card["data"]["train"]["rows_used"] == 11 and card["system_prompt"] == DEFAULT_SYSTEM_PROMPT
    for picture in ("loss.png", "rewards.png"):
        assert (grpo_run / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((grpo_run / "swanlog").glob("run-*"))

    final = grpo_run / "final"
    assert trained_system_prompt(final) == DEFAULT_SYSTEM_PROMPT
    engine = load_engine(final, device="cpu")  # as eval, infer and serve load it
    question = [{"role": "user", "content": "头痛怎么办？"}]
    [output] = engine.generate([question], GenerationSettings.greedy(max_new_tokens=8))
    assert output.text
    answers = [json.loads(line) for line in (grpo_run / "val_answers.jsonl").read_text().splitlines()]
    # one validation question (12 rows, val_ratio 0.1), asked with eval's prompt
    assert len(answers) == 1 and answers[0]["question"].startswith("以下是中国医学考试")


class Interrupted(Exception):
    pass


class InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupted(f"stopped after saving step {state.global_step}")


def test_grpo_run_resumes_after_an_interrupt(mcq_data, tmp_path):
    overrides = ["--output_dir", str(tmp_path), "--dataset", str(mcq_data), "--report_to", "none"]
    overrides += ["--max_steps", "2", "--save_steps", "1", "--val_questions", "0"]
    with pytest.raises(Interrupted):
        run(load_recipe("grpo_smoke", overrides), callbacks=[InterruptAfterFirstSave()])
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (tmp_path / "final").exists()
    run(load_recipe("grpo_smoke", [*overrides, "--overwrite_output_dir", "false"]), resume=True)
    card = json.loads((tmp_path / "run_card.json").read_text(encoding="utf-8"))
    assert card["resumed_from"] == str(tmp_path / "checkpoint-1") and card["global_step"] == 2
    assert [entry["step"] for entry in card["log_history"] if "reward" in entry] == [1, 2]
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_vllm_generation_without_vllm_is_refused_before_any_model_loads(mcq_data, tmp_path, capsys):
    from trl.import_utils import is_vllm_available

    if is_vllm_available():
        pytest.skip("vLLM is installed in this environment")
    command = ["--recipe", "grpo_smoke", "--output_dir", str(tmp_path / "out"), "--dataset", str(mcq_data)]
    from medsft.cli import run_command
    from medsft.train import main

    assert run_command("train", main, [*command, "--use_vllm", "true"]) == 2
    error = capsys.readouterr().err
    assert "use_vllm is true, but vLLM" in error and "--use_vllm false" in error
    assert not (tmp_path / "out").exists()


def test_rewards_that_differ_within_a_group_change_the_policy(
    mcq_data, tmp_path, monkeypatch, qwen3_tokenizer
):
    """The advantage path for real: with a reward that tells a group's completions apart, one step moves the
    weights (the random model's real rewards are all equal, hence a zero loss in the smoke)."""
    import torch
    from safetensors.torch import load_file

    from medsft import rewards
    from medsft.model import build_tiny_qwen3

    def even_length(completions, **_):
        return [float(len(rewards.completion_text(completion)) % 2) for completion in completions]

    def changed_weights(output_dir: Path, reward: str) -> list[str]:
        overrides = ["--output_dir", str(output_dir), "--dataset", str(mcq_data), "--report_to", "none"]
        overrides += ["--max_steps", "1", "--val_questions", "0", "--reward_funcs", reward]
        run(load_recipe("grpo_smoke", [*overrides, "--reward_weights", "1.0"]))
        trained = load_file(output_dir / "final" / "model.safetensors")
        initial = build_tiny_qwen3(qwen3_tokenizer, hidden_size=64, num_layers=2, seed=42).state_dict()
        return [name for name, weight in trained.items() if not torch.equal(weight, initial[name])]

    # the real format reward is 0 for every random completion: no advantage, the weights stay as built
    assert changed_weights(tmp_path / "same", "format") == []
    monkeypatch.setitem(rewards.REWARDS, "format", even_length)
    assert changed_weights(tmp_path / "differ", "format")
    card = json.loads((tmp_path / "differ" / "run_card.json").read_text(encoding="utf-8"))
    [step] = [entry for entry in card["log_history"] if "reward" in entry]
    assert step["rewards/even_length/std"] > 0 and step["frac_reward_zero_std"] < 1


def test_grpo_trains_on_two_processes_through_the_ddp_config(mcq_data, tmp_path):
    from medsft.paths import recipes_dir
    from tests.test_multiprocess import free_port

    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(recipes_dir() / "accelerate" / "ddp.yaml"), "--num_processes", "2"]
    command += ["--main_process_port", str(free_port()), "-m", "medsft.train", "--recipe", "grpo_smoke"]
    command += ["--output_dir", str(tmp_path), "--dataset", str(mcq_data), "--max_steps", "1"]
    command += ["--report_to", "none", "--val_questions", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "rank 0: 1, rank 1: 1 (global step 1)" in result.stderr
    card = json.loads((tmp_path / "run_card.json").read_text(encoding="utf-8"))
    assert card["world_size"] == 2 and (tmp_path / "final" / "model.safetensors").is_file()
