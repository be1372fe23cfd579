"""The GPU check's bundle: built from PyPI for this Python, installed with --no-index into a throw-away venv
over an interpreter that holds only the CUDA image's packages, and the check's dry run from it.

The image is imitated by a venv whose only packages are gpu_bundle.IMAGE, what they require and pip, linked
from this environment; the bundle's inputs stand in for $MEDSFT_SHARED, which points nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks import gpu_bundle
from medsft.model import reachable
from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[1]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def image_distributions() -> list[metadata.Distribution]:
    """gpu_bundle.IMAGE and everything they require (extras aside), as installed here."""
    found: dict[str, metadata.Distribution] = {}
    pending = [*gpu_bundle.IMAGE, "pip"]  # an image installs with pip
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found[name] = distribution = metadata.distribution(name)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def imitate_image(folder: Path) -> Path:
    """A python whose packages are the image's only (and pip): a venv, the distributions linked in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
    python = folder / "venv" / "bin" / "python"
    packages = folder / "image-site-packages"
    packages.mkdir()
    for distribution in image_distributions():
        installed = Path(distribution.locate_file(""))
        for top in {Path(str(file)).parts[0] for file in distribution.files or []}:
            if top != ".." and (installed / top).exists() and not (packages / top).exists():
                (packages / top).symlink_to(installed / top)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "image.pth").write_text(f"{packages}\n", encoding="utf-8")
    return python


def importable(python: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", code], cwd="/").returncode == 0


def test_the_torch_stand_in_names_the_image_version_and_its_requirements(tmp_path):
    pin = gpu_bundle.torch_stand_in(tmp_path)
    [wheel] = tmp_path.glob("torch-*.whl")
    assert pin == f"torch=={gpu_bundle.IMAGE['torch']}{gpu_bundle.TORCH_STAND_IN_SUFFIX}"
    assert wheel.name == f"{pin.replace('==', '-')}-py3-none-any.whl"
    # the image's own transformers is pinned unless medsft's floor rules it out (5.17 < 5.23)
    requirements = gpu_bundle.check_requirements(eval_metrics=False)
    assert "transformers==5.17.0" not in gpu_bundle.image_pins(requirements)
    assert "accelerate==1.15.0" in gpu_bundle.image_pins(requirements)
    assert not any(text.startswith(("jieba", "rouge-chinese", "swanlab", "gradio")) for text in requirements)


def test_a_bundle_venv_sees_this_pythons_packages_but_not_its_standard_library():
    import site
    import sysconfig

    seen = gpu_bundle.visible_site_dirs()
    assert all(folder in seen for folder in site.getsitepackages() if Path(folder).is_dir())
    assert sysconfig.get_paths()["stdlib"] not in seen
    assert not any(folder.endswith("lib-dynload") for folder in seen)


def test_the_run_from_a_bundle_drops_the_options_it_has_acted_on():
    from benchmarks.gpu_check import without_option

    argv = ["--wheels", "W", "--dry-run", "--budget-s=30", "--out", "O", "--budget-s", "40"]
    assert without_option(without_option(argv, "--wheels"), "--budget-s") == ["--dry-run", "--out", "O"]


@pytest.mark.slow
def test_the_check_installs_from_the_bundle_without_an_index_and_dry_runs(tmp_path):
    """Minutes: the bundle is downloaded from PyPI (~50 MiB), a venv is made and filled from it, and the dry
    run trains twice and converts the data."""
    if not reachable("https://pypi.org"):
        pytest.skip("PyPI is unreachable: the bundle is built from it")
    require_shared("data/delicate_medical_r1_data/val.jsonl")
    bundle = tmp_path / "bundle"
    built = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_bundle", "--out", str(bundle), "--python-version", PYTHON],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    manifest = json.loads((bundle / gpu_bundle.MANIFEST).read_text(encoding="utf-8"))
    names = {entry["name"] for entry in manifest["wheels"]}
    assert {"trl", "datasets", "matplotlib"} <= names
    assert not names & {"torch", "swanlab", "gradio", "deepspeed", "modelscope", "jieba"}
    assert manifest["total_bytes"] <= gpu_bundle.LIMIT_MIB * 2**20
    for entry in manifest["wheels"]:
        assert gpu_bundle.sha256(bundle / gpu_bundle.WHEELS / entry["file"]) == entry["sha256"]

    image = imitate_image(tmp_path / "image")
    assert importable(image, "torch") and importable(image, "transformers")
    assert not importable(image, "trl") and not importable(image, "datasets")
    out = tmp_path / "out"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    environment["MEDSFT_SHARED"] = str(tmp_path / "no-shared-folder")
    result = subprocess.run(
        [str(image), "-m", "benchmarks.gpu_check", "--wheels", str(bundle), "--out", str(out), "--dry-run"]
        + ["--variants", "medsft", "--stages", "data,full_1epoch,eval:full_1epoch,infer:full_1epoch"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    numbers = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert numbers["speed"]["medsft"]["returncode"] == 0 and numbers["speed"]["medsft"]["mfu"] > 0
    assert [stage["name"] for stage in numbers["stages"]] == ["data", "full_1epoch", "infer:full_1epoch"]
    assert all(stage["returncode"] == 0 for stage in numbers["stages"])
    assert any(line.startswith("eval:full_1epoch: jieba") for line in numbers["skipped"])
    assert (out / "gpu_check.md").read_text(encoding="utf-8").startswith("**Dry run on CPU")
    assert numbers["command"].startswith("python -m benchmarks.gpu_check --wheels ")  # as typed
