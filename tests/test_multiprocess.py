"""Two training processes on CPU (gloo), through `accelerate launch` and the shipped accelerate files.

DDP (LoRA; full fine-tuning with and without activation checkpointing), DeepSpeed ZeRO-3 and FSDP2, one
optimizer step each, all the way to a final/ that loads and answers a validation question. Full fine-tuning
paths see the same two rows, so their first logged loss and gradient norm must agree: the gradient reaches
every rank's parameters and is averaged the same way on every path.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from medsft.jsonl import read_jsonl
from medsft.paths import recipes_dir

ONE_STEP = ["--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none"]
ONE_ANSWER = ["--val_questions", "1", "--val_max_new_tokens", "2"]  # final/ is reloaded after training
LAUNCH_TIMEOUT_S = 600  # a hang (e.g. a collective that only one rank enters) fails here instead of blocking


@dataclass
class Launch:
    out: Path
    stderr: str

    @property
    def card(self) -> dict:
        return json.loads((self.out / "run_card.json").read_text(encoding="utf-8"))

    def first_step(self) -> dict:
        return next(entry for entry in self.card["log_history"] if "loss" in entry)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    """The smoke recipe without `ddp_find_unused_parameters: false`: DDP's unused-parameter search is then on
    for LoRA and for full fine-tuning without activation checkpointing, as in the shipped GPU recipes."""
    lines = (recipes_dir() / "smoke.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("ddp_find_unused_parameters:")]
    assert len(kept) == len(lines) - 1
    path = tmp_path_factory.mktemp("recipe") / "smoke_multiprocess.yaml"
    path.write_text("".join(kept), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def launch(tmp_path_factory, smoke_data, recipe_file):
    """launch(name, accelerate_file, *overrides) -> Launch; each configuration runs once per module."""
    done: dict[str, Launch] = {}

    def run(name: str, accelerate_file: str, *overrides: str) -> Launch:
        if name in done:
            return done[name]
        out = tmp_path_factory.mktemp(name)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
        command += [str(recipes_dir() / "accelerate" / accelerate_file), "--num_processes", "2"]
        command += ["--main_process_port", str(free_port()), "-m", "medsft.train"]
        command += ["--recipe", str(recipe_file), "--output_dir", str(out), "--dataset", str(smoke_data)]
        command += [*ONE_STEP, *ONE_ANSWER, *overrides]
        env = {**os.environ, "SWANLAB_MODE": "offline"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
        assert result.returncode == 0, result.stderr[-4000:]
        done[name] = Launch(out, result.stderr)
        return done[name]

    return run


def ddp_reference(launch) -> Launch:
    return launch("ddp-full", "ddp.yaml", "--activation_checkpointing", "false")


def assert_finished_with_loadable_final(run: Launch, dtype: torch.dtype = torch.float32):
    """Both ranks trained, the main process alone wrote the reports, final/ loads and answered a question."""
    from transformers import AutoModelForCausalLM

    assert "medsft train: optimizer steps per rank: rank 0: 1, rank 1: 1 (global step 1)" in run.stderr
    assert run.stderr.count("medsft train: wrote ") == 1
    card = run.card
    assert card["world_size"] == 2 and card["global_step"] == 1
    rows = card["data"]["train"]["rows_used"]
    assert run.first_step()["epoch"] == pytest.approx(1 / math.ceil(rows / 2))  # the rows split over 2 ranks
    model = AutoModelForCausalLM.from_pretrained(run.out / "final", dtype="auto")
    assert {p.dtype for p in model.parameters()} == {dtype}
    answers = read_jsonl(run.out / "val_answers.jsonl")  # written after final/ was reloaded
    assert len(answers) == 1 and answers[0]["output"]
    return model


def final_weights(run: Launch) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run.out / "final" / "model.safetensors")


# ---------------------------------------------------------------- DDP


def test_ddp_full_fine_tuning_without_checkpointing(launch):
    """No activation checkpointing: the Trainer turns on DDP's unused-parameter search."""
    run = ddp_reference(launch)
    assert_finished_with_loadable_final(run)
    assert "entropy" not in run.first_step()  # medsft's fast loss (SFTTrainer's own logs entropy)
    [saved] = [p.relative_to(run.out).as_posix() for p in run.out.rglob("*.safetensors")]
    assert saved == "final/model.safetensors"


def test_ddp_full_fine_tuning_with_checkpointing_matches(launch):
    run = launch("ddp-checkpointing", "ddp.yaml", "--activation_checkpointing", "true")
    assert_finished_with_loadable_final(run)
    reference = ddp_reference(launch).first_step()
    assert run.first_step()["loss"] == pytest.approx(reference["loss"], rel=1e-6)
    assert run.first_step()["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-5)


def test_ddp_lora_with_checkpointing_merges_the_adapter(launch, qwen3_tokenizer):
    """As recipes/lora.yaml trains: a PEFT model, so DDP's unused-parameter search is on."""
    from medsft.model import build_tiny_qwen3

    run = launch("ddp-lora", "ddp.yaml", "--use_peft", "--lora_r", "4", "--activation_checkpointing", "true")
    merged = assert_finished_with_loadable_final(run)
    assert (run.out / "adapter" / "adapter_config.json").is_file()
    base = build_tiny_qwen3(qwen3_tokenizer, seed=42)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not merged.get_parameter(name).equal(base.get_parameter(name))  # the trained adapter is merged in
    assert merged.get_parameter("model.norm.weight").equal(base.get_parameter("model.norm.weight"))  # frozen


# ---------------------------------------------------------------- DeepSpeed ZeRO-3 and FSDP2


def test_zero3_finishes_after_saving_and_trains_like_ddp(launch):
    """final/ is reloaded by the main process alone once DeepSpeed's config is released (it used to hang)."""
    run = launch("zero3", "zero3.yaml")
    assert_finished_with_loadable_final(run)
    assert "entropy" in run.first_step()  # SFTTrainer's loss: ZeRO-3 gathers the head in its forward only
    reference = ddp_reference(launch)
    assert run.first_step()["loss"] == pytest.approx(reference.first_step()["loss"], rel=1e-5)
    assert run.first_step()["grad_norm"] == pytest.approx(reference.first_step()["grad_norm"], rel=1e-4)
    # Adam's first step moves each weight by about +-lr (5e-3) whatever the gradient's size; where a gradient
    # is near Adam's eps the step is a ratio of tiny numbers, which differ in their last bits between paths.
    expected = final_weights(reference)
    for name, tensor in final_weights(run).items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-4, msg=name)


def test_fsdp2_fast_loss_gradients_equal_data_parallel_on_two_ranks():
    """accelerate's FSDP2 layout on 2 gloo ranks (tests/fsdp2_ranks.py): the tied head read inside the
    gathered group, an untied head sharded on its own through the module; every gradient as data parallel."""
    script = Path(__file__).with_name("fsdp2_ranks.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(free_port()), str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    for rank in (0, 1):
        assert f"rank {rank}: tied head grouped with the embedding: 24 gradients equal" in result.stdout
        assert f"rank {rank}: untied head sharded on its own: 25 gradients equal" in result.stdout
    assert result.stderr.count("the output layer's weight is sharded outside its forward") == 2  # untied only


def test_fsdp_final_is_saved_in_the_recipe_dtype(tmp_path, qwen3_tokenizer):
    """The gathered FSDP state dict holds fp32 master weights under bf16; final/ is written in bf16."""
    from transformers import AutoModelForCausalLM

    from medsft.model import build_tiny_qwen3
    from medsft.train import save_in_dtype

    model = build_tiny_qwen3(qwen3_tokenizer)
    save_in_dtype(model, model.state_dict(), tmp_path, torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype="auto")
    assert {p.dtype for p in reloaded.parameters()} == {torch.bfloat16}
    for name, weight in reloaded.state_dict().items():
        assert weight.equal(model.state_dict()[name].to(torch.bfloat16)), name
