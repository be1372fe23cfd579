"""Checkpoints of a run over several machines: each node keeps its own when their output folders differ.

The Trainer writes checkpoints, trainer_state.json and the rotation of old checkpoints on the global main
process only, unless `save_on_each_node`. With `output_dir` on each machine's local disk, the other machines
then hold no checkpoint and `--resume` fails there. So at the start of a multi-node run the nodes find out,
with a marker file, whether they see one folder; where they do not, `save_on_each_node` is switched on (each
node's first process saves into its own folder, and rotates it) and the log says so in one line. On a shared
folder nothing changes: one process writes, as on one machine.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_PREFIX = ".medsft-node-marker-"


def node_count() -> int:
    """Machines in this launch: all processes over those of this machine (torchrun / accelerate's env)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return max(1, world // max(1, local))


def every_rank_sees_one_folder(folder: Path) -> bool:
    """Whether a file the global main process writes in `folder` is there for every process (collective)."""
    import torch.distributed as dist

    token = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(token, src=0)
    marker = folder / f"{MARKER_PREFIX}{token[0]}"
    if dist.get_rank() == 0:
        marker.touch()
    dist.barrier()
    seen: list[bool | None] = [None] * dist.get_world_size()
    dist.all_gather_object(seen, marker.exists())
    if dist.get_rank() == 0:
        marker.unlink()
    return all(seen)


def save_on_every_node_without_a_shared_folder(sft) -> None:
    """Switch `save_on_each_node` on when the nodes of a multi-node run do not share `output_dir`."""
    import torch.distributed as dist

    if node_count() < 2 or sft.save_on_each_node or not (dist.is_available() and dist.is_initialized()):
        return
    if every_rank_sees_one_folder(Path(sft.output_dir)):
        return
    sft.save_on_each_node = True
    if sft.process_index == 0:
        log.info(
            "%s is not shared between the %d nodes: each node saves its own checkpoints there "
            "(save_on_each_node), so --resume finds them on every node",
            sft.output_dir,
            node_count(),
        )
