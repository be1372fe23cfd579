"""One rank of the FSDP2 check of tests/test_multiprocess.py: `torchrun --nproc_per_node 2 fsdp2_ranks.py`.

accelerate runs FSDP only on accelerators (a CPU launch with recipes/accelerate/fsdp.yaml trains as DDP), so
this applies accelerate's own FSDP2 preparation (`fsdp2_prepare_model`, with the settings of fsdp.yaml) to a
tiny Qwen3 on gloo, runs medsft's fast loss on a different batch on each rank, and compares every gathered
gradient with the average over both batches of the plain loss's gradients on an unsharded copy.

Two layouts: the tied Qwen3 head as accelerate groups it (final norm + embedding + head, gathered for the
whole forward: the fast loss reads a plain tensor), and an untied head sharded on its own (the weight is a
DTensor outside the head's forward: the loss must go through the module). Prints one line per layout.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from medsft.model import build_tiny_qwen3, load_bundled_tokenizer
from medsft.trainer import add_trained_token_loss, plain_causal_lm_loss

SEQ, PROMPT = 24, 6


def batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    input_ids = torch.randint(0, 5000, (2, SEQ), generator=generator)
    labels = input_ids.clone()
    labels[:, :PROMPT] = -100  # a prompt
    labels[1, SEQ - 5 :] = -100  # right padding
    return input_ids, labels


def tiny_model(tied: bool) -> torch.nn.Module:
    model = build_tiny_qwen3(load_bundled_tokenizer(), hidden_size=32, num_layers=2, seed=0)
    if not tied:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    return model


def reference_gradients(model: torch.nn.Module, world_size: int) -> dict[str, torch.Tensor]:
    """Data parallel's gradient: the mean over ranks of each rank's mean-loss gradient."""
    for rank in range(world_size):
        input_ids, labels = batch(rank)
        (plain_causal_lm_loss(model(input_ids=input_ids).logits, labels) / world_size).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def shard_as_accelerate_does(model: torch.nn.Module, rank: int, ram_efficient: bool) -> torch.nn.Module:
    plugin = FullyShardedDataParallelPlugin(  # recipes/accelerate/fsdp.yaml
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        reshard_after_forward=True,
        cpu_ram_efficient_loading=ram_efficient,
        state_dict_type="FULL_STATE_DICT",
    )
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin),
        device=torch.device("cpu"),
        is_main_process=rank == 0,
        mixed_precision="no",
        parallelism_config=None,
        torch_device_mesh=None,
    )
    return fsdp2_prepare_model(accelerator, model)


def check(tied: bool, rank: int, world_size: int) -> str:
    reference = reference_gradients(tiny_model(tied), world_size)
    model = tiny_model(tied)
    add_trained_token_loss(model)
    if not tied:
        fully_shard(model.lm_head)  # a unit of its own: accelerate then leaves it out of its tail group
    # rank 0's full state dict is broadcast when loading RAM-efficiently: not with a head sharded beforehand
    model = shard_as_accelerate_does(model, rank, ram_efficient=tied)
    input_ids, labels = batch(rank)
    head, seen = model.get_output_embeddings(), {}

    def record_head_weight(module, args, output):  # what the fast loss finds once the decoder has run
        seen["head_weight_is_sharded"] = isinstance(head.weight, DTensor)

    model.get_decoder().register_forward_hook(record_head_weight)
    model(input_ids=input_ids, labels=labels, trained_token_loss=True).loss.backward()
    assert seen["head_weight_is_sharded"] == (not tied), seen
    for name, param in model.named_parameters():
        grad = param.grad.full_tensor() if isinstance(param.grad, DTensor) else param.grad
        torch.testing.assert_close(grad, reference[name], rtol=1e-4, atol=1e-6, msg=name)
    layout = "tied head grouped with the embedding" if tied else "untied head sharded on its own"
    return f"rank {rank}: {layout}: {len(reference)} gradients equal"


def main() -> int:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        for tied in (True, False):
            print(check(tied, rank, world_size), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
