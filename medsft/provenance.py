"""What produced a result: the medsft code commit, the Python and package versions, the hardware, and the
training run's card a served model comes from. Written into train's run_card.json and eval's run.json."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

RUN_CARD = "run_card.json"  # next to a training run's final/


def git_state() -> dict[str, Any]:
    """Commit of the medsft source that runs and whether tracked files differ from it ({"sha", "dirty"});
    both null when the package is not in a git checkout (an installed wheel)."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "sha": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """{"python": …, package: installed version or None} in the order given."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def describe_device(device: str) -> dict[str, str | None]:
    """{"device", "device_name" (the GPU's name or the CPU model), "cuda" (the CUDA version torch is built
    with, null for a CPU build)}."""
    return {"device": device, "device_name": hardware_name(device), "cuda": torch.version.cuda}


def hardware_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the CPU model."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def read_run_card(model_dir: Path | None) -> dict | None:
    """The training run's card for a model folder (output/<run>/run_card.json next to final/), if any."""
    if model_dir is None:
        return None
    for path in (model_dir / RUN_CARD, model_dir.parent / RUN_CARD):
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("could not read %s", path)
    return None
