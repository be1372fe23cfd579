"""A newcomer's first commands: SwanLab never asks for a login; a model that cannot be had is the first error
and names the setting that works for the command; `make train MODEL=…` replaces the recipe's model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pty_terminal import Terminal
from tiny_chat_models import THINKING_REPLY_ANSWER

from medsft import data, evaluate, infer, model, train
from medsft.model import ModelSourceError, reachable, resolve_model_dir

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "https://medsft-unreachable.invalid"  # .invalid never resolves


def no_swanlab_key_env(home: Path) -> dict[str, str]:
    """The environment of someone who never logged in to SwanLab, with no mode chosen."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SWANLAB_")}
    return {**env, "HOME": str(home), "TERM": "xterm"}


def test_swanlab_would_prompt_in_this_terminal(tmp_path):
    """The control for the test below: without medsft's choice of mode, swanlab.init asks for a login here."""
    code = f"import swanlab; swanlab.init(project='control', logdir={str(tmp_path / 'swanlog')!r})"
    terminal = Terminal([sys.executable, "-c", code], no_swanlab_key_env(tmp_path), cwd=str(tmp_path))
    try:
        terminal.read_until("Enter your choice", timeout=120)
    finally:
        terminal.close()


def test_a_swanlab_mode_swanlab_refuses_stops_training_before_any_work(tmp_path, smoke_data):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "medsft.cli", "train", "--recipe", "smoke", "--output_dir", str(out)]
    env = {**no_swanlab_key_env(tmp_path), "SWANLAB_MODE": ""}
    result = subprocess.run(
        [*command, "--dataset", str(smoke_data)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("medsft train:")]
    assert "SWANLAB_MODE" in line and "offline" in line and "Traceback" not in result.stderr
    assert not out.exists()


def test_training_in_a_terminal_without_a_swanlab_key_logs_offline(tmp_path, smoke_data):
    """A login prompt would wait for input: the run would not end and `wait` would fail."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "medsft.cli", "train", "--recipe", "smoke", "--output_dir", str(out)]
    command += ["--dataset", str(smoke_data), "--max_steps", "1", "--eval_strategy", "no"]
    command += ["--save_strategy", "no", "--val_questions", "0"]
    terminal = Terminal(command, no_swanlab_key_env(tmp_path), cwd=str(tmp_path))
    try:
        assert terminal.wait(timeout=600) == 0, terminal.transcript[-3000:]
    finally:
        terminal.close()
    lines = [line for line in terminal.transcript.splitlines() if "SwanLab" in line and "offline" in line]
    assert len(lines) == 1 and f"swanlab sync {out / 'swanlog'}/run-*" in lines[0], terminal.transcript
    assert "Enter your choice" not in terminal.transcript
    assert len(list((out / "swanlog").glob("run-*/run-*.swanlab"))) == 1


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, "offline"), ({"SWANLAB_API_KEY": "k" * 21}, "online"), ({"SWANLAB_MODE": "local"}, "local")],
)
def test_tracking_mode(tmp_path, monkeypatch, environment, expected):
    import swanlab

    for key in [key for key in os.environ if key.startswith("SWANLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert train.tracking_mode(swanlab.Settings()) == expected


def test_a_key_saved_by_swanlab_login_counts(tmp_path, monkeypatch):
    import swanlab

    for key in [key for key in os.environ if key.startswith("SWANLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".swanlab").mkdir()
    (tmp_path / ".swanlab" / ".netrc").write_text(
        "machine https://api.swanlab.cn\n  login https://swanlab.cn\n  password " + "k" * 21 + "\n"
    )
    assert train.tracking_mode(swanlab.Settings()) == "online"


# --- a model that cannot be had -----------------------------------------------------------------------------


def test_reachability_is_one_quick_attempt(monkeypatch):
    for key in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")  # the proxy is what must answer
        assert reachable(UNREACHABLE)
    monkeypatch.delenv("HTTPS_PROXY")
    assert not reachable(f"http://127.0.0.1:{port}")  # closed now
    started = time.monotonic()
    assert not reachable(UNREACHABLE)
    assert time.monotonic() - started < model.REACHABILITY_TIMEOUT_S + 1


@pytest.fixture
def hubs_unreachable(monkeypatch, tmp_path):
    """ModelScope and the Hugging Face hub out of reach, with empty download caches."""
    import modelscope_hub

    monkeypatch.setenv("MODELSCOPE_ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope-cache"))
    monkeypatch.setattr(modelscope_hub.config, "_default_config", None)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", UNREACHABLE)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for key in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    yield
    monkeypatch.setattr(modelscope_hub.config, "_default_config", None)


def test_an_unreachable_hub_fails_at_once_with_the_advice(hubs_unreachable):
    started = time.monotonic()
    with pytest.raises(ModelSourceError) as raised:
        resolve_model_dir("Qwen/Qwen3-1.7B")
    assert time.monotonic() - started < 15  # one connection attempt and a cache look-up, no retries
    message = str(raised.value)
    assert f"ModelScope ({UNREACHABLE}) is unreachable" in message
    assert "modelscope download --model Qwen/Qwen3-1.7B --local_dir DIR" in message
    assert "MODEL=/path/to/DIR" in message and "--model /path/to/DIR" in message
    assert "docs/offline.md" in message
    with pytest.raises(ModelSourceError, match="hf download Org/Model --local-dir DIR"):
        resolve_model_dir("hf:Org/Model")


def test_an_earlier_download_is_used_offline(hubs_unreachable, tmp_path):
    snapshot = tmp_path / "hf-cache" / "models--Org--Model" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hf-cache" / "models--Org--Model" / "refs").mkdir()
    (tmp_path / "hf-cache" / "models--Org--Model" / "refs" / "main").write_text("0123abc")
    assert resolve_model_dir("hf:Org/Model", cache_dir=tmp_path / "hf-cache") == snapshot


def error_of(call) -> str:
    with pytest.raises(ModelSourceError) as raised:
        call()
    return str(raised.value)


def test_each_command_names_its_own_setting(hubs_unreachable, tmp_path, thinking_model):
    missing = "Org/No-Such-Model"
    # train: before the recipe's bf16 check (this recipe needs a GPU) and before any data check
    message = error_of(lambda: train.main(["--recipe", "full_1epoch", "--model_name_or_path", missing]))
    assert "MODEL=/path/to/DIR" in message and "--model_name_or_path /path/to/DIR" in message
    assert error_of(lambda: train.main(["--recipe", "full_1epoch"])).startswith(
        "Could not get 'Qwen/Qwen3-1.7B'"
    )
    message = error_of(lambda: train.main(["--recipe", "smoke", f"--tokenizer={missing}"]))
    assert 'ARGS="--tokenizer /path/to/DIR"' in message and "MODEL=" not in message
    # data
    sample = REPO / "data" / "sample" / "medical_sample.jsonl"
    message = error_of(
        lambda: data.main(["--src", str(sample), "--tokenizer", missing, "--out-dir", str(tmp_path)])
    )
    assert "TOKENIZER=/path/to/DIR" in message and "--tokenizer /path/to/DIR" in message
    assert "MODEL=" not in message
    # eval: the model and the baseline each by their own name
    argv = ["--mcq-mode", "none", "--out-dir", str(tmp_path / "reports")]
    message = error_of(lambda: evaluate.main(["--model", str(thinking_model), "--baseline", missing, *argv]))
    assert "BASELINE=/path/to/DIR" in message and "--baseline /path/to/DIR" in message
    message = error_of(lambda: evaluate.main(["--model", missing, *argv]))
    assert message.count("MODEL=/path/to/DIR") == 1 and "BASELINE" not in message
    # infer (demo and serve take --model the same way)
    message = error_of(lambda: infer.main(["--model", missing, "-q", "头痛怎么办？"]))
    assert "MODEL=/path/to/DIR" in message and "--model /path/to/DIR" in message


def test_the_model_source_is_checked_from_the_parsed_recipe(hubs_unreachable):
    from medsft.recipe import load_recipe

    missing = "Org/No-Such-Model"
    # argparse's rule: the last value of a key is the one checked
    assert load_recipe(
        "smoke", ["--model_name_or_path", missing, "--model_name_or_path", "tiny"], check_sources=True
    )
    with pytest.raises(ModelSourceError, match=f"Could not get '{missing}'"):
        load_recipe(
            "smoke", ["--model_name_or_path", "tiny", f"--model_name_or_path={missing}"], check_sources=True
        )
    # before the ranges of the other values; only when asked (loading a recipe to inspect it needs no hub)
    with pytest.raises(ModelSourceError, match=f"Could not get '{missing}'"):
        load_recipe("smoke", ["--model_name_or_path", missing, "--max_steps", "-5"], check_sources=True)
    assert load_recipe("smoke", ["--model_name_or_path", missing]).model.model_name_or_path == missing


def test_make_train_takes_model():
    dry_run = subprocess.run(
        ["make", "-n", "train", "RECIPE=lora", "MODEL=/models/Qwen3-1.7B"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "medsft.cli train --recipe lora --model_name_or_path /models/Qwen3-1.7B" in dry_run


def test_demo_check_prints_one_line_per_check(thinking_model, capsys):
    from medsft import demo

    port = demo.free_port("127.0.0.1")
    assert demo.main(["--model", str(thinking_model), "--check", "--port", str(port), "--greedy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.startswith("demo check") for line in lines), lines
    reasoning, answer = lines[2], lines[3]
    assert reasoning.startswith(f"demo check: {demo.TEXT['zh']['thought_title']}: ")
    assert answer.startswith("demo check: answer: ") and answer.endswith(THINKING_REPLY_ANSWER)
    assert lines[-1] == "demo check passed"
