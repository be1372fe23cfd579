"""The lowest-version set that CI resolves (.ci/constraints-min.txt) is pyproject.toml's floors, every one."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# torch's floor is 2.6, but older torch is on PyPI only as CUDA wheels: the set is tested with the CPU wheel.
TESTED_ABOVE_THE_FLOOR = {"torch": Version("2.13.0")}


def requirement_texts() -> list[str]:
    """pyproject.toml's dependencies and its dev and gpu extras."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata, pyproject.toml as of the last install
        return [
            text
            for text in metadata.requires("medsft")
            if ";" not in text or any(f'extra == "{extra}"' in text for extra in ("dev", "gpu"))
        ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["dev"], *extras["gpu"]]


def floors() -> dict[str, Version]:
    found = {}
    for text in requirement_texts():
        requirement = Requirement(text)
        [floor] = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        found[canonicalize_name(requirement.name)] = floor
    return found


def pins() -> dict[str, Version]:
    found = {}
    for line in (ROOT / ".ci" / "constraints-min.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


def test_every_dependency_has_a_floor_and_ci_pins_it():
    expected = {**floors(), **TESTED_ABOVE_THE_FLOOR}
    assert pins() == expected
