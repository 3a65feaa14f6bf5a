"""Training on several GPUs (or CPU processes) with ``torchrun`` and DistributedDataParallel.

Launch the usual ``workbench train`` command under ``torchrun``, one process per GPU::

    torchrun --nproc-per-node 4 -m workbench train --method semi-cml-prel --data DIR --device cuda
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m workbench train ...                                    # several machines

What each part does (:class:`~workbench.train.Trainer` calls the functions below):

* **Processes.** ``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
  :func:`init` joins the process group: NCCL on CUDA (rank r uses ``cuda:LOCAL_RANK``),
  gloo on CPU (what the tests use: 2 CPU processes).
* **Data.** Every rank loads the same (small, 2D) data set and draws the same global batch
  at each step from the same seeded permutation; rank r keeps rows r, r + W, r + 2W, ...
  (:func:`shard`, the strided split of ``DistributedSampler``). ``batch_size`` and
  ``unlabeled_batch_size`` stay *global* and must be divisible by the world size W.
* **Model.** The method is wrapped in ``DistributedDataParallel``: its ``forward`` is the
  training step, so gradients are averaged over ranks during ``backward`` and every rank
  applies the same optimiser step. ``find_unused_parameters=True`` because several
  methods leave a head or a branch out of some steps. BatchNorm buffers are broadcast from
  rank 0 at every forward (DDP's ``broadcast_buffers``).
* **Teachers.** EMA teachers follow identical students, so they stay identical. The BMA
  teacher decides on the validation accuracy: validation runs on rank 0 and its scores are
  broadcast (:func:`broadcast`), so every rank takes the same decision. After each epoch
  :func:`parameters_identical` compares every parameter (students and teachers) across
  ranks; the run stops with an error if they ever differ.
* **Files.** Rank 0 alone writes the run folder (config, events, checkpoints, metrics) and
  shows progress bars; evaluation runs on rank 0.

What DDP is *not*: a single process with the same global batch. Each rank's BatchNorm
statistics and its batch-level losses (soft Dice over the batch, the ASC matrix over the
unlabeled items) see only its local W-th of the batch, as in any data-parallel run. A
single process with ``micro_batches = W`` computes exactly that (gradient accumulation over
the same strided chunks), which is what tests/test_distributed.py checks against. On CUDA,
``nn.SyncBatchNorm`` would share BatchNorm statistics; it is not used, so CPU and GPU runs
follow the same rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from workbench.errors import ConfigError

__all__ = [
    "World",
    "world_from_env",
    "init",
    "shard",
    "broadcast",
    "all_mean",
    "parameters_identical",
    "wrap",
    "barrier",
    "shutdown",
]


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes; ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The :class:`World` that ``torchrun`` describes in the environment (one process if none)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"torchrun environment: {exc}") from None
    return World(rank, size, local_rank)


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group (once per process) and return this rank's device."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise ConfigError(
                f"LOCAL_RANK={world.local_rank} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s): use --nproc-per-node <= the GPU count"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shard(indices: Tensor, world: World) -> Tensor:
    """Rows ``rank, rank + W, ...`` of a global batch's indices (all of them on one process)."""
    if indices.shape[0] % world.size:
        raise ConfigError(
            f"a global batch of {indices.shape[0]} does not split over {world.size} processes: "
            f"use a batch size divisible by the number of processes"
        )
    return indices[world.rank :: world.size]


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_mean(values: dict[str, Tensor], world: World) -> dict[str, Tensor]:
    """Mean over ranks of scalar tensors (one collective for the whole dict)."""
    if not world.distributed or not values:
        return values
    names = sorted(values)
    # one device for the collective: the accelerator's where any value lives there (a method may
    # log a schedule weight as a CPU scalar)
    device = next((v.device for v in values.values() if v.device.type != "cpu"), torch.device("cpu"))
    stacked = torch.stack([values[n].detach().float().reshape(()).to(device) for n in names])
    dist.all_reduce(stacked)
    stacked /= world.size
    return dict(zip(names, stacked.unbind()))


def parameters_identical(module: nn.Module, world: World) -> bool:
    """Whether every parameter (trainable or not: students and teachers) is bitwise equal
    on all ranks, compared through a per-parameter checksum (sum and weighted sum, fp64)."""
    if not world.distributed:
        return True
    sums = []
    for p in module.parameters():
        flat = p.detach().double().flatten()
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64)
        sums += [flat.sum(), (flat * weights).sum()]
    local = torch.stack(sums) if sums else torch.zeros(1, dtype=torch.float64, device=_device_of(module))
    gathered = [torch.empty_like(local) for _ in range(world.size)]
    dist.all_gather(gathered, local)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _device_of(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.zeros(())).device


def wrap(method: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(method)`` across the world, or the method itself on one process."""
    if not world.distributed:
        return method
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(method, device_ids=device_ids, find_unused_parameters=True)


def barrier(world: World) -> None:
    """Wait until every process gets here (e.g. rank 1 for rank 0's evaluation)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group. A process that exits without it can abort in gloo's
    threads ("terminate called without an active exception") and take the run down."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
