"""Shared fixtures: the bundled Qwen3 tokenizer, real data from the shared folder, and a tiny random Qwen3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medsft.chat_format import END_OF_TURN
from medsft.paths import bundled_tokenizer_dir, shared_dir

# Tests run offline: no hub look-ups, no telemetry, SwanLab never reaches the cloud.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("SWANLAB_MODE", "offline")
# The shared folder as an absolute path, so commands that tests start in other folders find it too.
os.environ["MEDSFT_SHARED"] = str(shared_dir())


def require_shared(relative: str) -> Path:
    """A file or folder of the shared inputs, or skip naming what is missing."""
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"shared input missing: {path} (set MEDSFT_SHARED to the folder that holds it)")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The real Qwen3-1.7B tokenizer shipped inside the package: always there, no skip."""
    return bundled_tokenizer_dir()


@pytest.fixture(scope="session")
def qwen3_tokenizer(tokenizer_dir):
    from medsft.model import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def real_val_rows() -> Path:
    return require_shared("data/delicate_medical_r1_data/val.jsonl")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, qwen3_tokenizer) -> Path:
    """A saved tiny random-weight Qwen3 with the real tokenizer: loads and generates like a real model."""
    from medsft.model import build_tiny_qwen3

    out = tmp_path_factory.mktemp("tiny-qwen3")
    model = build_tiny_qwen3(qwen3_tokenizer)
    model.generation_config.eos_token_id = [qwen3_tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    model.save_pretrained(out)
    qwen3_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """(model, tokenizer) of the tiny model, loaded as evaluation loads models."""
    from medsft.engine import load_engine

    generator = load_engine(tiny_model_dir, device="cpu")
    return generator.model, generator.tokenizer


@pytest.fixture(scope="session")
def thinking_model(tmp_path_factory, qwen3_tokenizer) -> Path:
    """A tiny model that answers every question with one memorised <think>…</think> + answer reply."""
    from tiny_chat_models import thinking_model_dir

    return thinking_model_dir(tmp_path_factory.getbasetemp(), qwen3_tokenizer)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """data/sample converted by `medsft data` into a temporary folder (train.jsonl, val.jsonl)."""
    from medsft.data import prepare
    from medsft.paths import sample_data_file

    out = tmp_path_factory.mktemp("smoke-data")
    prepare(str(sample_data_file()), out)
    return out


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_data) -> Path:
    """The smoke recipe trained once (SwanLab offline) into a temporary output folder; returns that folder.

    It holds final/ (tiny Qwen3, tokenizer with Qwen3's chat template), checkpoint-4/ and checkpoint-8/,
    loss.png, run_card.json, val_answers.jsonl and swanlog/. Treat it as read-only: other tests share it.
    """
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("smoke-run")
    env = {**os.environ, "SWANLAB_MODE": "offline"}
    env.pop("SWANLAB_LOG_DIR", None)
    command = [sys.executable, "-m", "medsft.train", "--recipe", "smoke", "--output_dir", str(out)]
    result = subprocess.run(
        [*command, "--dataset", str(smoke_data)], env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"smoke training failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return out


@pytest.fixture
def submitted_prompts(monkeypatch) -> list[list[int]]:
    """The prompt token ids of every request given to an engine while the test runs (any backend)."""
    from medsft import engine

    prompts: list[list[int]] = []
    original = engine.Request.__init__

    def recording(self, prompt_ids, *args, **kwargs):
        prompts.append(list(prompt_ids))
        original(self, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(engine.Request, "__init__", recording)
    return prompts


def user_turn(text: str) -> str:
    """A user turn exactly as Qwen3's chat template writes it."""
    return f"<|im_start|>user\n{text}{END_OF_TURN}\n"
