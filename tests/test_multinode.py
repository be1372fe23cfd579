"""Training over two "nodes" with recipes/accelerate/slurm.sbatch: a fake srun starts the script's task twice
on this machine, each with its node's SLURM variables and its own output folder (a node's local disk); the
two `accelerate launch` meet over gloo. Each node must keep its own checkpoints, so that --resume works on
both."""

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
# One task per node, as `srun --ntasks-per-node=1` starts them; each node writes to its own folder.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 MEDSFT_OUTPUT_DIR="$NODE_DISKS/node$node" \\
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
def test_the_slurm_script_trains_on_two_nodes_with_local_disks_and_resumes(tmp_path, smoke_data):
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

    def launch(*overrides: str) -> None:
        result = subprocess.run(
            ["bash", str(recipes_dir() / "accelerate" / "slurm.sbatch"), *train, *overrides],
            cwd=REPO,
            env={**env, "MAIN_PROCESS_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=900,
        )
        logs = "\n".join((disks / f"node{node}.log").read_text(encoding="utf-8")[-2000:] for node in (0, 1))
        assert result.returncode == 0, logs

    launch("--max_steps", "4")  # the smoke recipe saves every 4 steps
    for node in (0, 1):
        run = disks / f"node{node}" / "smoke"
        state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text(encoding="utf-8"))
        assert state["global_step"] == 4
    log = (disks / "node0.log").read_text(encoding="utf-8")
    assert "is not shared between the 2 nodes" in log and "rank 1: 4" in log

    launch("--max_steps", "6", "--resume")
    for node in (0, 1):
        run = disks / f"node{node}" / "smoke"
        state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
        assert state["global_step"] == 6
    card = json.loads((disks / "node0" / "smoke" / "run_card.json").read_text(encoding="utf-8"))
    assert card["resumed_from"].endswith("checkpoint-4") and card["world_size"] == 2
