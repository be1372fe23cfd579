"""The installable package: what ships in it, where commands write, and a wheel whose `medsft` works."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_shared

from medsft.chat_format import special_token_ids
from medsft.paths import (
    bundled_tokenizer_dir,
    output_dir,
    processed_dir,
    recipes_dir,
    sample_data_file,
)

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
# What a wheel is built from: the package, and the top-level folders it ships as package data.
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "medsft", "recipes", "data/sample")


def test_output_folders_resolve_against_the_current_folder_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDSFT_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("MEDSFT_DATA_DIR", raising=False)
    assert output_dir() == tmp_path / "output"
    assert processed_dir() == tmp_path / "data" / "processed"
    monkeypatch.setenv("MEDSFT_OUTPUT_DIR", "runs")
    monkeypatch.setenv("MEDSFT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert output_dir() == tmp_path / "runs"
    assert processed_dir() == tmp_path / "elsewhere"


def test_shipped_files_are_found():
    assert {"smoke.yaml", "lora.yaml", "full_1epoch.yaml"} <= {p.name for p in recipes_dir().glob("*.yaml")}
    launch_configs = {path.name for path in (recipes_dir() / "accelerate").iterdir()}
    assert {"ddp.yaml", "fsdp.yaml", "zero3.yaml", "slurm.sbatch"} <= launch_configs
    assert sample_data_file().is_file() and sample_data_file().stat().st_size > 0
    folder = bundled_tokenizer_dir()
    assert all((folder / name).is_file() for name in (*TOKENIZER_FILES, "LICENSE", "NOTICE"))
    notice = (folder / "NOTICE").read_text(encoding="utf-8")
    assert "Qwen3" in notice and "Alibaba Cloud" in notice and "Apache License, Version 2.0" in notice
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")


def test_bundled_tokenizer_is_qwen3s(qwen3_tokenizer):
    assert len(qwen3_tokenizer) == 151_669 and qwen3_tokenizer.chat_template
    ids = special_token_ids(qwen3_tokenizer)
    assert len(set(ids.values())) == len(ids) and all(i != qwen3_tokenizer.unk_token_id for i in ids.values())
    assert qwen3_tokenizer.decode(qwen3_tokenizer.encode("头痛怎么办？")) == "头痛怎么办？"


def test_bundled_tokenizer_files_are_the_shared_real_ones():
    shared = require_shared("models/Qwen3-1.7B-tokenizer")
    for name in TOKENIZER_FILES:
        assert (bundled_tokenizer_dir() / name).read_bytes() == (shared / name).read_bytes(), name


def copy_source(destination: Path) -> Path:
    """The files a build reads, copied: the build leaves nothing in the checkout and sees no stale build/."""
    for part in SOURCE_PARTS:
        source, target = REPO / part, destination / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def fresh_venv(folder: Path) -> Path:
    """A venv without pip whose only extra path is this environment's site-packages (dependencies, offline).

    Directories listed in a .pth file go on sys.path without their own .pth files being run, so the editable
    install of the checkout (a .pth import hook in that site-packages) stays inactive there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    venv_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dependencies = [*site.getsitepackages(), site.getusersitepackages()]
    Path(venv_site, "_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return python


def pip(*arguments: str | Path) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, arguments)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No PYTHONPATH, no output overrides, and no shared folder: what a user with only the package has."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    for key in ("MEDSFT_OUTPUT_DIR", "MEDSFT_DATA_DIR", "MEDSFT_DEBUG", "SWANLAB_LOG_DIR"):
        env.pop(key, None)
    return {**env, "MEDSFT_SHARED": str(tmp_path / "no-shared"), "SWANLAB_MODE": "offline"}


def installed_paths(python: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, medsft, medsft.paths as p; print(json.dumps({'package': medsft.__file__, "
        "'recipes': str(p.recipes_dir()), 'sample': str(p.sample_data_file()), "
        "'tokenizer': str(p.bundled_tokenizer_dir()), 'output': str(p.output_dir())}))"
    )
    command = [python, "-c", code]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_editable_install_finds_the_top_level_folders(tmp_path):
    source = copy_source(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    pip("--python", python, "install", "--no-deps", "--no-index", "--no-build-isolation", "-e", source)
    (tmp_path / "work").mkdir()
    found = installed_paths(python, tmp_path / "work", clean_env(tmp_path))
    assert found["package"] == str(source / "medsft" / "__init__.py")
    assert found["recipes"] == str(source / "recipes")
    assert found["sample"] == str(source / "data" / "sample" / "medical_sample.jsonl")
    assert found["output"] == str(tmp_path / "work" / "output")


@pytest.mark.slow
def test_a_wheel_gives_a_medsft_command_that_works_from_an_empty_folder(tmp_path):
    source = copy_source(tmp_path / "src")
    pip("wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", tmp_path / "wheel", source)
    (wheel,) = (tmp_path / "wheel").glob("medsft-*.whl")
    python = fresh_venv(tmp_path / "venv")
    pip("--python", python, "install", "--no-deps", "--no-index", "--force-reinstall", wheel)
    shutil.rmtree(source)  # nothing may come from a source tree any more

    work, env = tmp_path / "work", clean_env(tmp_path)
    work.mkdir()
    installed = tmp_path / "venv" / "lib"
    found = installed_paths(python, work, env)
    for key in ("package", "recipes", "sample", "tokenizer"):
        assert Path(found[key]).is_relative_to(installed), (key, found[key])
    assert not Path(found["package"]).is_relative_to(REPO)
    assert (Path(found["recipes"]) / "data" / "mix_zh.yaml").is_file()  # the shipped mixtures, by name

    def medsft(*arguments: str) -> subprocess.CompletedProcess:
        command = [str(tmp_path / "venv" / "bin" / "medsft"), *arguments]
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    medsft("data", "--src", found["sample"], "--name", "sample")
    report = json.loads((work / "data" / "processed" / "sample" / "report.json").read_text(encoding="utf-8"))
    assert report["rows"]["rejected"] == 0 and report["splits"]["train"] > 0
    assert Path(report["tokenizer"]).is_relative_to(installed)

    medsft("train", "--recipe", "smoke")
    final = work / "output" / "smoke" / "final"
    assert (final / "config.json").is_file() and (final / "tokenizer_config.json").is_file()
