"""The error contract, command by command: bad arguments and bad files end with exit status 2 and one clear
line on stderr (`medsft <command>: …`, or argparse's `medsft <command>: error: …` under its usage), no
traceback, and no file or folder left behind. Every case fails before a model loads.

The table runs through `medsft.cli.main` in this process (importing each command once); one case per command
also runs as a real `python -m medsft.cli` process.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from medsft import cli

ROW = {"question": "头痛怎么办？", "think": "先分析原因。", "answer": "多休息。"}
CHAT_ROW = {
    "messages": [
        {"role": "user", "content": "头痛怎么办？"},
        {"role": "assistant", "content": "<think>\n想\n</think>\n\n休息"},
    ]
}
FILES = {  # name -> content, created in the case's folder on request
    "raw.jsonl": json.dumps(ROW, ensure_ascii=False) + "\n",
    "empty.jsonl": "\n\n",
    "broken.json": '[{"question": "q", "think": "t", "answer": "a"} {"question": "q2"}]',
    "text.parquet": json.dumps(ROW) + "\n",
    "notes.txt": "hello",
    "chat.jsonl": json.dumps(CHAT_ROW, ensure_ascii=False) + "\n",
    "bad.yaml": "learning_rate: [1e-4\n",
    "twice.yaml": "learning_rate: 1.0e-4\nmax_steps: 2\nlearning_rate: 2.0e-4\n",
    "set/train.jsonl": json.dumps(CHAT_ROW, ensure_ascii=False) + "\n",
    "set/val.jsonl": json.dumps(CHAT_ROW, ensure_ascii=False) + "\n",
    "nomodel/readme.txt": "not a model",
    "nodata/readme.md": "# nothing here",
    "questions.jsonl": json.dumps({"question": "头痛怎么办？"}, ensure_ascii=False) + "\n",
}
# (command line with @ for the case's folder, files it needs, a part of the expected error line)
CASES = [
    # data
    ("data --src @/missing.jsonl", [], "does not exist"),
    ("data --src @/raw.jsonl --name ../x", ["raw.jsonl"], "--name"),
    ("data --src @/raw.jsonl --name /abs", ["raw.jsonl"], "--name"),
    ("data --src @/raw.jsonl --max-length -1", ["raw.jsonl"], "--max-length"),
    ("data --src @/raw.jsonl --max-length 0", ["raw.jsonl"], "--max-length"),
    ("data --src @/raw.jsonl --val-ratio 1.5", ["raw.jsonl"], "--val-ratio"),
    ("data --src @/raw.jsonl --question-field ''", ["raw.jsonl"], "--question-field"),
    ("data --src @/raw.jsonl --tokenizer @/nomodel", ["raw.jsonl", "nomodel/readme.txt"], "tokenizer"),
    ("data --src @/broken.json --max-length none", ["broken.json"], "not a valid JSON array"),
    ("data --src @/text.parquet --max-length none", ["text.parquet"], "not a readable Parquet file"),
    ("data --src @/empty.jsonl --max-length none", ["empty.jsonl"], "holds no rows"),
    ("data --src @/chat.jsonl --max-length none", ["chat.jsonl"], "already a chat row"),
    ("data --src @/notes.txt", ["notes.txt"], "unsupported file type"),
    ("data --src @/nodata", ["nodata/readme.md"], "holds no"),
    ("data --src @/raw.jsonl --strict --question-field q", ["raw.jsonl"], "--strict"),
    # train
    ("train --recipe nope", [], "No recipe named 'nope'"),
    ("train --recipe @/missing.yaml", [], "does not exist"),
    ("train --recipe @/bad.yaml", ["bad.yaml"], "not valid YAML"),
    ("train --recipe @/twice.yaml", ["twice.yaml"], "learning_rate"),
    ("train --learning_rate true", [], "learning_rate"),
    ("train --max_steps -5", [], "max_steps"),
    ("train --max_steps 2.7", [], "max_steps"),
    ("train --per_device_train_batch_size 0", [], "per_device_train_batch_size"),
    ("train --no_such_key 1", [], "no_such_key"),
    ("train --seed 99999999999999999999", [], "seed must be below 2**32"),
    ("train --output_dir ''", [], "output_dir must be a non-empty name"),
    ("train --dataset @/missing", [], "is missing"),
    (
        "train --dataset @/set --resume_from_checkpoint @/missing",
        ["set/train.jsonl", "set/val.jsonl"],
        "missing",
    ),
    # eval
    ("eval", [], "No trained model found in"),  # says MODEL=, as infer/demo/serve do
    ("eval --name ../x", [], "--name"),
    ("eval --name /abs --model @/nomodel", ["nomodel/readme.txt"], "--name"),
    ("eval --model @/missing", [], "is not a folder with a model"),
    ("eval --model @/nomodel --data @/missing.jsonl", ["nomodel/readme.txt"], "not found"),
    ("eval --model @/nomodel --limit -1", ["nomodel/readme.txt"], "--limit"),
    ("eval --model @/nomodel --batch_size 0", ["nomodel/readme.txt"], "--batch-size"),
    ("eval --model @/nomodel --max_new_tokens -5", ["nomodel/readme.txt"], "--max-new-tokens"),
    ("eval --model @/nomodel --mcq_mode bogus", ["nomodel/readme.txt"], "--mcq_mode"),
    ("eval --model @/nomodel --mcq_columns bogus", ["nomodel/readme.txt"], "--mcq-columns"),
    ("eval --from_predictions @/missing", [], "run.json"),
    # infer
    ("infer", [], "No trained model found"),
    ("infer -q ' ' --model @/nomodel", ["nomodel/readme.txt"], "question is empty"),
    ("infer --file @/missing.jsonl --model @/nomodel", ["nomodel/readme.txt"], "does not exist"),
    ("infer -q 头痛 --max-new-tokens -5", [], "--max-new-tokens"),
    ("infer -q 头痛 --temperature -1", [], "--temperature"),
    ("infer -q 头痛 --top-p 0", [], "--top-p"),
    ("infer --file @/questions.jsonl --batch-size 0", ["questions.jsonl"], "--batch-size"),
    ("infer -q 头痛 --model @/missing", [], "is not a folder with a model"),
    ("infer -q 头痛 --model @/nomodel", ["nomodel/readme.txt"], "not a loadable model folder"),
    (
        "infer --file @/questions.jsonl --model @/nomodel",
        ["questions.jsonl", "nomodel/readme.txt"],
        "loadable",
    ),
    ("infer -q 头痛", [], "No trained model found"),
    # demo --check
    ("demo --check", [], "No trained model found"),
    ("demo --check --model @/missing", [], "is not a folder with a model"),
    ("demo --check --model @/nomodel", ["nomodel/readme.txt"], "not a loadable model folder"),
    ("demo --check --max-new-tokens 0", [], "--max-new-tokens"),
    ("demo --check --temperature -1", [], "--temperature"),
    ("demo --port -1", [], "--port"),
    ("demo --port 70000", [], "--port"),
    ("demo --concurrency 0", [], "--concurrency"),
    ("demo --check --max-input-tokens 0", [], "--max-input-tokens"),
]
if (Path(cli.__file__).parent / "serve.py").is_file():
    CASES += [
        ("serve", [], "No trained model found"),
        ("serve --model @/missing", [], "is not a folder with a model"),
        ("serve --max-batch-size 0", [], "--max-batch-size"),
        ("serve --temperature -1", [], "--temperature"),
        ("serve --port 70000", [], "--port"),
        ("serve --port 0", [], "--port"),
        ("serve --max-queue -1", [], "--max-queue"),
        ("serve --max-tokens 0", [], "--max-tokens"),
        ("serve --max-model-len 0", [], "--max-model-len"),
        ("serve --top-p 1.5", [], "--top-p"),
        ("serve --top-k -1", [], "--top-k"),
    ]
PROCESS_CASES = [  # one per command, as a real process
    "data --src @/broken.json --max-length none",
    "train --max_steps -5",
    "eval --model @/missing",
    "infer -q 头痛 --model @/nomodel",
    "demo --check --model @/missing",
    *(["serve --model @/missing"] if any(case[0].startswith("serve") for case in CASES) else []),
]


def arguments(command: str, folder: Path) -> list[str]:
    return [part.replace("@", str(folder)) for part in shlex.split(command)]


def make_folder(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FILES[name], encoding="utf-8")


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def error_line(command: str, stderr: str) -> str:
    """The one line that says what failed (argparse prints its usage block above it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    message = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(message) == 1, stderr
    assert message[0].startswith(f"medsft {command}: "), stderr
    return message[0]


@pytest.fixture
def case_folder(tmp_path, monkeypatch):
    """A fresh working folder; outputs and processed data would go inside it."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MEDSFT_OUTPUT_DIR", str(folder / "output"))
    monkeypatch.setenv("MEDSFT_DATA_DIR", str(folder / "processed"))
    monkeypatch.delenv("MEDSFT_DEBUG", raising=False)
    logger = logging.getLogger("medsft")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield folder
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


@pytest.mark.parametrize(("command", "names", "expected"), CASES, ids=[case[0] for case in CASES])
def test_a_bad_argument_or_file_is_one_line_and_exit_2(case_folder, capfd, command, names, expected):
    make_folder(case_folder, names)
    before = tree(case_folder)
    capfd.readouterr()
    try:
        status = cli.main(arguments(command, case_folder))
    except SystemExit as exit_:  # argparse
        status = exit_.code
    captured = capfd.readouterr()
    assert status == 2, captured.err
    line = error_line(command.split()[0], captured.err)
    assert expected in line, line
    assert captured.out == ""
    assert tree(case_folder) == before  # nothing written, nothing created, nothing changed


@pytest.mark.parametrize("command", PROCESS_CASES)
def test_a_real_process_ends_the_same_way(tmp_path, command):
    make_folder(tmp_path, ["broken.json", "nomodel/readme.txt"])
    before = tree(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "medsft.cli", *arguments(command, tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MEDSFT_OUTPUT_DIR": str(tmp_path / "output"), "MEDSFT_DEBUG": ""},
    )
    assert result.returncode == 2, result.stderr
    error_line(command.split()[0], result.stderr)
    assert result.stdout == ""
    assert tree(tmp_path) == before


def failing_with(number: int, filename: str | None = None):
    def fail(*_args, **_kwargs):
        raise OSError(number, os.strerror(number), filename)

    return fail


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            lambda folder, mp: mp.setattr(os, "fsync", failing_with(28)),
            "No space left on device: free some",
        ),
        (
            lambda folder, mp: mp.setattr(os, "open", failing_with(30, "out/x/.lock")),
            "out/x/.lock: Read-only",
        ),
        (lambda folder, mp: (folder / "afile").write_text("x"), "a file stands where a folder is needed"),
    ],
    ids=["disk-full", "read-only", "out-dir-is-a-file"],
)
def test_the_machine_refusing_a_write_is_one_line_and_exit_2(
    case_folder, capfd, monkeypatch, patch, expected
):
    make_folder(case_folder, ["raw.jsonl"])
    argv = arguments("data --src @/raw.jsonl --max-length none --name x --out-dir @/afile", case_folder)
    if "afile" not in expected and "stands" not in expected:
        argv[-1] = str(case_folder / "out")
    patch(case_folder, monkeypatch)
    capfd.readouterr()
    status = cli.main(argv)
    monkeypatch.undo()
    captured = capfd.readouterr()
    assert status == 2, captured.err
    assert expected in error_line("data", captured.err)


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("address", ["busy", "no-such-host"])
def test_an_address_the_server_cannot_take_is_refused_before_the_model_loads(
    case_folder, capfd, command, address
):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        host = "127.0.0.1" if address == "busy" else "999.1.1.1"
        capfd.readouterr()
        # the model does not exist either: the address is checked first, before minutes of loading
        status = cli.main(
            [command, "--model", str(case_folder / "missing"), "--host", host, "--port", str(port)]
        )
    captured = capfd.readouterr()
    assert status == 2, captured.err
    line = error_line(command, captured.err)
    expected = (
        f"port {port} on 127.0.0.1 is in use" if address == "busy" else "not an address of this machine"
    )
    assert expected in line and '--port N"' in line


def truncate_weights(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def widen_config(model: Path) -> None:
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["intermediate_size"] *= 2
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")


def add_a_layer(model: Path) -> None:
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["num_hidden_layers"] += 1
    config["layer_types"] = [*config["layer_types"], config["layer_types"][-1]]
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")


MODEL_COMMANDS = {  # each loads the model through the one loader, medsft.engine.load_engine
    "infer": "infer -q 头痛 --model @/model",
    "eval": "eval --model @/model --data @/set/val.jsonl --mcq-mode none --limit 1",
    "serve": "serve --model @/model --port PORT",
}


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (truncate_weights, "model.safetensors is truncated"),
        (widen_config, "config.json does not match the weights (6 weights of another shape"),
        (add_a_layer, "config.json does not match the weights (11 weights missing"),
    ],
    ids=["truncated-weights", "config-other-shapes", "config-more-layers"],
)
@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_a_damaged_model_folder_is_one_line_and_exit_2(
    case_folder, capfd, tiny_model_dir, command, damage, expected
):
    import shutil
    import socket

    make_folder(case_folder, ["set/train.jsonl", "set/val.jsonl"])
    shutil.copytree(tiny_model_dir, case_folder / "model")
    damage(case_folder / "model")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capfd.readouterr()
    status = cli.main(arguments(MODEL_COMMANDS[command].replace("PORT", str(port)), case_folder))
    captured = capfd.readouterr()
    assert status == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err and all(line.startswith(f"medsft {command}: ") for line in lines)
    assert expected in lines[-1], captured.err  # eval logs its inputs first; the error is the last line
