"""The wheels and inputs `benchmarks/gpu_check.py` needs on a bare CUDA image, in one folder with a manifest.

    make gpu-bundle                                   # output/gpu_bundle/ for Python 3.12, manylinux x86_64
    python -m benchmarks.gpu_bundle --out DIR --python-version 3.11

The image the check runs on has PyTorch, transformers, accelerate, peft, numpy, pyarrow, safetensors and
tokenizers (IMAGE), no network, and none of the rest. This resolves, with PyPI's metadata and without
downloading torch, two sets for the target Python and platform: what the image holds (IMAGE and all they
require) and what the check imports (CHECK_NEEDS at medsft's floors, with torch held at the image's version
and every other image package at its version where medsft's floor allows it). The bundle is the second set
less the first: a package the image lacks, or holds in a version below medsft's floor (transformers), comes
as a wheel; nothing else does (no gradio, swanlab, deepspeed or modelscope: the check's runs report to none
and build their models from a config).

The folder also carries the inputs the check reads from $MEDSFT_SHARED (the Qwen3-1.7B config.json and the
real rows), copied from there, under `shared/` in the same layout: the bundle is output, never committed.
`manifest.json` lists every wheel (name, version, file, sha256, bytes, why it is there) and input.
`python -m benchmarks.gpu_check --wheels DIR` installs from it with `--no-index`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from medsft.cli import run_command
from medsft.errors import MedsftError
from medsft.jsonl import write_json
from medsft.paths import output_dir, shared_dir

log = logging.getLogger("medsft.gpu_bundle")

ROOT = Path(__file__).resolve().parents[1]
# What the CUDA image holds (None: a version not stated; the newest that fits the others is assumed).
IMAGE: dict[str, str | None] = {
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "accelerate": "1.15.0",
    "peft": None,
    "numpy": None,
    "pyarrow": None,
    "safetensors": None,
    "tokenizers": None,
}
# torch's own requirements (its CUDA wheels aside): the image holds them with torch.
TORCH_REQUIRES = ("filelock", "typing-extensions>=4.10", "setuptools", "sympy>=1.13.3", "networkx>=2.5.1")
TORCH_REQUIRES += ("jinja2", "fsspec>=0.8.5")
# What the check's processes import beyond the image, each at medsft's floor (pyproject.toml): TRL's trainer
# and datasets (training), matplotlib (a run's loss.png, eval's charts).
CHECK_NEEDS = ("trl", "datasets", "transformers", "accelerate", "peft", "safetensors", "pyyaml", "tqdm")
CHECK_NEEDS += ("matplotlib",)
# eval's ROUGE-L on jieba words: jieba's dictionaries alone are an 18 MiB wheel, more than the limit leaves,
# so they come only with --with-eval-metrics (without them the check skips its eval stages and says why).
EVAL_METRICS = ("rouge-chinese", "jieba")
# Published as a source archive only: built here into a wheel, which must come out pure Python.
SOURCE_ONLY = ("jieba",)
# The inputs under $MEDSFT_SHARED that the check reads (benchmarks/scale_check.py's CONFIG and ROWS).
INPUTS = (Path("models/Qwen3-1.7B-tokenizer/config.json"), Path("data/delicate_medical_r1_data/val.jsonl"))
EVAL_INPUTS = (Path("benchmarks/xmedbench_zh/dev_zh.json"),)  # eval's default MCQ split (evaluate.MCQ_DIR)
DEFAULT_PYTHON = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
LIMIT_MIB = 56.0  # what travels to a GPU machine beside the working tree is 64 MiB in all
MANIFEST = "manifest.json"
WHEELS = "wheels"
# A stand-in wheel for the image's torch: its real metadata would pull in CUDA wheels that are not needed to
# resolve the rest. A post-release no index has, so no real torch wheel can be taken in its place.
TORCH_STAND_IN_SUFFIX = ".post999"


class BundleError(MedsftError):
    """The bundle cannot be built: resolution failed, a wheel is not pure Python, it outgrew its limit."""


def medsft_floors() -> dict[str, Requirement]:
    """pyproject.toml's dependencies by canonical name (the installed metadata where tomllib is missing)."""
    try:
        import tomllib

        texts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "dependencies"
        ]
    except ModuleNotFoundError:  # Python 3.10
        texts = [text for text in metadata.requires("medsft") or [] if ";" not in text]
    return {canonicalize_name(Requirement(text).name): Requirement(text) for text in texts}


def check_requirements(eval_metrics: bool) -> list[str]:
    """CHECK_NEEDS (and EVAL_METRICS) at medsft's floors; markers dropped (they are for the target)."""
    floors = medsft_floors()
    names = [*CHECK_NEEDS, *(EVAL_METRICS if eval_metrics else ())]
    return [f"{name}{floors[canonicalize_name(name)].specifier}" for name in names]


def image_pins(requirements: list[str]) -> list[str]:
    """The image's stated versions, each where the check's requirements allow it (else the bundle carries a
    newer one)."""
    wanted = {canonicalize_name(Requirement(text).name): Requirement(text) for text in requirements}
    pins = []
    for name, version in IMAGE.items():
        if version is None or name == "torch":
            continue
        requirement = wanted.get(canonicalize_name(name))
        if requirement is None or requirement.specifier.contains(version, prereleases=True):
            pins.append(f"{name}=={version}")
    return pins


def torch_stand_in(folder: Path) -> str:
    """A metadata-only torch wheel at the image's version; returns the requirement that selects it."""
    version = IMAGE["torch"] + TORCH_STAND_IN_SUFFIX
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as wheel:
        requires = "".join(f"Requires-Dist: {requirement}\n" for requirement in TORCH_REQUIRES)
        wheel.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n{requires}"
        )
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: medsft\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return f"torch=={version}"


def pip(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    log.info("%s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise BundleError(f"pip {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result


def target_options(python_version: str) -> list[str]:
    platforms = [item for platform in PLATFORMS for item in ("--platform", platform)]
    return ["--python-version", python_version, *platforms, "--only-binary=:all:"]


def resolve(requirements: list[str], python_version: str, stand_in: Path) -> dict[str, dict]:
    """pip's resolution for the target as if installing into an empty folder: {name: {version, url}}."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        pip(
            [
                *("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)),
                *("--target", str(Path(scratch) / "target"), "--find-links", str(stand_in)),
                *target_options(python_version),
                *requirements,
            ]
        )
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): {
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"],
        }
        for item in installs
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_name(path: Path) -> str:
    return canonicalize_name(path.name.split("-")[0])


def build(out: Path, python_version: str, limit_mib: float, eval_metrics: bool = False) -> dict:
    requirements = check_requirements(eval_metrics)
    source_only = {canonicalize_name(name) for name in SOURCE_ONLY}
    source_only_wanted = {canonicalize_name(Requirement(text).name) for text in requirements} & source_only
    binary = [text for text in requirements if canonicalize_name(Requirement(text).name) not in source_only]
    with tempfile.TemporaryDirectory() as scratch:
        stand_in = Path(scratch)
        torch_pin = torch_stand_in(stand_in)
        image_requirements = [
            torch_pin,
            *(
                f"{name}=={version}" if version else name
                for name, version in IMAGE.items()
                if name != "torch"
            ),
        ]
        image = resolve(image_requirements, python_version, stand_in)
        check = resolve([*binary, torch_pin, *image_pins(requirements)], python_version, stand_in)
    bundled = {
        name: found
        for name, found in check.items()
        if name not in image or Version(image[name]["version"]) != Version(found["version"])
    }
    if "torch" in bundled:
        raise BundleError(
            f"the check needs torch {bundled['torch']['version']}, not the image's {IMAGE['torch']}"
        )
    wheels = out / WHEELS
    if out.exists():
        shutil.rmtree(out)
    wheels.mkdir(parents=True)
    pins = [f"{name}=={found['version']}" for name, found in sorted(bundled.items())]
    pip(["download", "--no-deps", "--dest", str(wheels), *target_options(python_version), *pins])
    floors = medsft_floors()
    for name in (name for name in SOURCE_ONLY if canonicalize_name(name) in source_only_wanted):
        # the floor's newest release, built from its source archive
        pip(
            [
                "wheel",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                f"{name}{floors[canonicalize_name(name)].specifier}",
            ]
        )
    entries = []
    for path in sorted(wheels.glob("*.whl")):
        name = wheel_name(path)
        if name in source_only and not path.name.endswith("-py3-none-any.whl"):
            raise BundleError(
                f"{path.name}: built from source but not pure Python; it would not fit the image."
            )
        why = "not in the image"
        if name in image:
            why = f"the image's {image[name]['version']} is older than the check needs"
        version = path.name.split("-")[1]
        entries.append(
            {"name": name, "version": version, "file": path.name, "sha256": sha256(path)}
            | {"bytes": path.stat().st_size, "why": why}
        )
    inputs = []
    for relative in (*INPUTS, *(EVAL_INPUTS if eval_metrics else ())):
        source = shared_dir() / relative
        if not source.is_file():
            raise BundleError(f"{source} is missing: set MEDSFT_SHARED to the folder with the shared inputs.")
        target = out / "shared" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        inputs.append(
            {"path": f"shared/{relative}", "sha256": sha256(target), "bytes": target.stat().st_size}
        )
    total = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    manifest = {
        "python": python_version,
        "platforms": list(PLATFORMS),
        "image": {name: version or "any" for name, version in IMAGE.items()},
        "eval_metrics": eval_metrics,
        "requirements": requirements,  # what gpu_check installs, pip resolving against the image
        "wheels": entries,
        "inputs": inputs,
        "total_bytes": total,
    }
    write_json(out / MANIFEST, manifest)
    if total > limit_mib * 2**20:
        raise BundleError(f"{out} holds {total / 2**20:.1f} MiB, above its {limit_mib:g} MiB limit.")
    return manifest


# ---------------------------------------------------------------- on the GPU machine


def visible_site_dirs() -> list[str]:
    """The folders this interpreter imports installed packages from (its standard library and the current
    directory aside): a venv created from it sees them too, whether this is the system's Python or a venv."""
    import sysconfig

    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}

    def standard_library(
        path: str,
    ) -> bool:  # site-packages usually lies inside the standard library's folder
        inside = any(path == root or path.startswith(root + os.sep) for root in stdlib)
        return inside and Path(path).name not in ("site-packages", "dist-packages")

    return [
        path
        for path in sys.path
        if path
        and Path(path).is_dir()
        and Path(path).resolve() != Path.cwd().resolve()
        and not standard_library(path)
    ]


def install(bundle: Path, env: Path) -> Path:
    """A throw-away venv at `env` that sees this interpreter's packages (the image's torch), with the
    bundle's requirements installed from its wheels only (--no-index; no configuration file or PIP_*
    setting of this machine applies). Returns the venv's python."""
    manifest_file = bundle / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"{bundle} holds no {MANIFEST}: build the bundle with `make gpu-bundle`.")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest["python"] != running:
        raise BundleError(
            f"{bundle} is built for Python {manifest['python']}, this is {running}: rebuild it with "
            f"`python -m benchmarks.gpu_bundle --python-version {running}`."
        )
    # No pip of its own (nor, on Python <= 3.11, an old setuptools that would hide the image's): the venv
    # runs the image's pip, which installs into the venv.
    venv = [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env)]
    subprocess.run(venv, check=True)
    python = env / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    seen = dict.fromkeys(visible_site_dirs())  # after the venv's own folder: the bundle's wheels come first
    (Path(site_packages) / "medsft-image.pth").write_text("\n".join(seen) + "\n", encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [str(python), "-m", "pip", "install", "--no-index", "--no-cache-dir"]
    command += ["--find-links", str(bundle / WHEELS), *manifest["requirements"]]
    log.info("%s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode:
        raise BundleError(
            f"installing from {bundle} failed: {' '.join(result.stderr.split())[-600:]} "
            "(rebuild the bundle for this image: IMAGE in benchmarks/gpu_bundle.py)"
        )
    return python


def summary(manifest: dict) -> str:
    lines = ["| wheel | version | MiB | why |", "|---|---|---:|---|"]
    for entry in sorted(manifest["wheels"], key=lambda entry: -entry["bytes"]):
        lines.append(
            f"| {entry['name']} | {entry['version']} | {entry['bytes'] / 2**20:.2f} | {entry['why']} |"
        )
    total = manifest["total_bytes"] / 2**20
    return "\n".join(
        [
            *lines,
            "",
            f"{len(manifest['wheels'])} wheels and {len(manifest['inputs'])} inputs, {total:.1f} MiB in all.",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_bundle", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--out", type=Path, help="default: $MEDSFT_OUTPUT_DIR/gpu_bundle")
    parser.add_argument(
        "--python-version", default=DEFAULT_PYTHON, help=f"the image's Python ({DEFAULT_PYTHON})"
    )
    parser.add_argument(
        "--limit-mib", type=float, default=LIMIT_MIB, help=f"largest bundle ({LIMIT_MIB:g} MiB)"
    )
    parser.add_argument(
        "--with-eval-metrics",
        action="store_true",
        help="also jieba and rouge-chinese (eval's ROUGE-L, +18 MiB)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = (args.out or output_dir() / "gpu_bundle").absolute()
    manifest = build(out, args.python_version, args.limit_mib, args.with_eval_metrics)
    print(summary(manifest))
    print(f"\nWrote {out}; on the GPU machine: python -m benchmarks.gpu_check --wheels {out} --out DIR")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_NO_INPUT", "1")
    sys.exit(run_command("gpu_bundle", main, sys.argv[1:]))
