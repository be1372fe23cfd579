"""Training over two "nodes" with recipes/accelerate/slurm.sbatch: a fake srun starts the script's task twice
on this machine, each with its node's SLURM variables and either its own output folder (a node's local disk)
or one shared folder; the two `accelerate launch` meet over gloo. Local folders are refused at the start (the
other node could not resume); a shared one trains, saves and resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medsft.multinode import node_count
from medsft.paths import recipes_dir

REPO = Path(__file__).resolve().parents[1]
FAKE_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && printf '127.0.0.1\\n127.0.0.1\\n'
"""
# One task per node, as `srun --ntasks-per-node=1` starts them; each node writes to its own folder unless
# SHARED_OUTPUT_DIR names one for all.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 \\
    MEDSFT_OUTPUT_DIR="${SHARED_OUTPUT_DIR:-$NODE_DISKS/node$node}" \\
    "$@" > "$NODE_DISKS/node$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nodes_are_counted_from_the_launchers_environment(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert node_count() == 1
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert node_count() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert node_count() == 1


@pytest.mark.slow
def test_the_slurm_script_refuses_local_output_folders_and_resumes_on_a_shared_one(tmp_path, smoke_data):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (fake / name).write_text(text, encoding="utf-8")
        (fake / name).chmod(0o755)
    disks = tmp_path / "disks"
    disks.mkdir()
    env = {
        **os.environ,
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node[0-1]",
        "NODE_DISKS": str(disks),
        "ACCEL": "ddp",
        "GPUS_PER_NODE": "1",
        "PYTHON": sys.executable,
    }
    train = ["--recipe", "smoke", "--dataset", str(smoke_data), "--eval_strategy", "no"]
    train += ["--val_questions", "0", "--report_to", "none"]

    def launch(*overrides: str, **settings: str) -> tuple[int, list[str]]:
        result = subprocess.run(
            ["bash", str(recipes_dir() / "accelerate" / "slurm.sbatch"), *train, *overrides],
            cwd=REPO,
            env={**env, "MAIN_PROCESS_PORT": str(free_port()), **settings},
            capture_output=True,
            text=True,
            timeout=900,
        )
        return result.returncode, [(disks / f"node{node}.log").read_text(encoding="utf-8") for node in (0, 1)]

    code, logs = launch("--max_steps", "4")
    assert code != 0
    for log in logs:
        assert "medsft train: output_dir " in log and "is not shared between the 2 nodes" in log, log[-2000:]
    assert not list(disks.glob("node*/smoke/checkpoint-*"))

    shared = tmp_path / "shared"
    code, logs = launch("--max_steps", "4", SHARED_OUTPUT_DIR=str(shared))
    assert code == 0, "\n".join(log[-2000:] for log in logs)
    assert "rank 0: 4, rank 1: 4" in logs[0]
    code, logs = launch("--max_steps", "6", "--resume", SHARED_OUTPUT_DIR=str(shared))
    assert code == 0, "\n".join(log[-2000:] for log in logs)
    state = json.loads((shared / "smoke" / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
    card = json.loads((shared / "smoke" / "run_card.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 6 and card["world_size"] == 2
    assert card["resumed_from"].endswith("checkpoint-4")
