"""A run over several machines needs one output folder that every machine sees.

The Trainer writes checkpoints, trainer_state.json and the rotation of old checkpoints on the global main
process. With `output_dir` on each machine's local disk the other machines hold no checkpoint, and `--resume`
fails there. `save_on_each_node` does not mend it: transformers' `save_pretrained` writes the weights on
global rank 0 only (5.25), so the other nodes' checkpoints lack the model. So at the start of a multi-node run
the processes find out, with a marker file, whether they see one folder, and refuse in one line if not.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from medsft.errors import MedsftError

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


class UnsharedOutputError(MedsftError):
    """The machines of a multi-node run do not share the output folder."""


def require_a_shared_output_dir(sft) -> None:
    """Refuse a multi-node run whose processes do not all see one `output_dir` (collective, every rank)."""
    import torch.distributed as dist

    if node_count() < 2 or not (dist.is_available() and dist.is_initialized()):
        return
    if not every_rank_sees_one_folder(Path(sft.output_dir)):
        raise UnsharedOutputError(
            f"output_dir {sft.output_dir} is not shared between the {node_count()} nodes: checkpoints are "
            "written on the main node only, so the others could not --resume. Pass --output_dir on a file "
            "system every node mounts (NFS, Lustre, ...)."
        )
