"""Several processes training one model: torchrun's environment, the process group, agreed decisions.

`torchrun --nproc-per-node=N -m charrnn train ...` starts N copies of the trainer with RANK,
WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE set. Each rank trains its own share of the B streams
and DistributedDataParallel all-reduces the gradients in backward, so every rank applies the
same update. What the loop does next (log, validate, save, stop) is agreed on by all ranks at
once over a small CPU (gloo) channel: a rank never waits in a collective the others skipped,
and on a GPU the agreement needs no device sync. Only rank 0 prints, logs and writes files.

A single process (no torchrun) gets a `Team` of one whose collectives are no-ops.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from charrnn.errors import ConfigError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
TIMEOUT = timedelta(minutes=30)  # a rank stuck this long in a collective is a dead run


@dataclass(frozen=True)
class World:
    """Where this process sits among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, batch_size: int) -> slice:
        """This rank's share of the B streams: a contiguous block of B / size rows."""
        if batch_size % self.size:
            raise ConfigError(
                f"--batch-size {batch_size} does not split evenly over {self.size} processes; "
                f"use a multiple of {self.size}"
            )
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)


def world_from_env(environ: dict[str, str] | None = None) -> World:
    """The World torchrun describes in the environment; a plain process is rank 0 of 1."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        defaults = ("0", "1", "0", "1")
        values = {name: int(env.get(name, default)) for name, default in zip(ENV_VARS, defaults, strict=True)}
    except ValueError:
        shown = ", ".join(f"{n}={env.get(n)!r}" for n in ENV_VARS)
        raise ConfigError(f"malformed torchrun environment ({shown}); launch with torchrun") from None
    world = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
    if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size):
        raise ConfigError(f"inconsistent torchrun environment: rank {world.rank} of {world.size}; launch with torchrun")
    return world


def rank_device(device: torch.device, world: World) -> torch.device:
    """On CUDA each local rank drives its own GPU; other devices are used as they are."""
    if device.type != "cuda" or not world.distributed:
        return device
    if world.local_size > torch.cuda.device_count():  # checked by every rank, so rank 0 can say it
        raise ConfigError(
            f"{world.local_size} processes per node but {torch.cuda.device_count()} GPU(s) visible; "
            "use --nproc-per-node at most the GPU count, or --device cpu"
        )
    return torch.device("cuda", world.local_rank)


class Team:
    """The collectives the trainer needs; for a world of one, each is the identity."""

    def __init__(self, world: World, device: torch.device) -> None:
        self.world = world
        self.device = device
        self.backend: str | None = None
        self.control: Any = None  # process group for CPU-side agreement
        if not world.distributed:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(self.backend, timeout=TIMEOUT)
        self.control = dist.new_group(backend="gloo") if self.backend != "gloo" else dist.group.WORLD

    def close(self, clean: bool = True) -> None:
        """Leave the process group; after a clean end, wait for every rank first.

        Destroying the group while a peer still talks to it (or leaving it to interpreter
        shutdown) can abort the process from gloo's worker threads.
        """
        if not (self.world.distributed and dist.is_initialized()):
            return
        if clean:
            dist.barrier(group=self.control)
        gc.collect()  # drop finished work objects (and their tensors) while Python is fully alive
        dist.destroy_process_group()

    def agree(self, values: Sequence[int]) -> list[int]:
        """Element-wise maximum over all ranks: any rank that wants to stop, log or save makes all do it."""
        if not self.world.distributed:
            return list(values)
        flags = torch.tensor(list(values), dtype=torch.int64)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.control)
        return [int(v) for v in flags.tolist()]

    def barrier(self) -> None:
        if self.world.distributed:
            dist.barrier(group=self.control)

    def share(self, value: Any) -> Any:
        """Rank 0's value of a small JSON-able object, on every rank."""
        if not self.world.distributed:
            return value
        box = [value if self.world.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of `tensor` over all ranks (in place, on its own device)."""
        if self.world.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_rows(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's block of rows joined along `dim`, in rank order (the whole batch's state)."""
        if not self.world.distributed:
            return tensor
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(self.world.size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=dim)

    def gather_cpu(self, tensor: torch.Tensor) -> torch.Tensor:
        """Same-shaped CPU tensors (RNG states) from every rank, stacked in rank order."""
        if not self.world.distributed:
            return tensor.unsqueeze(0)
        parts = [torch.empty_like(tensor) for _ in range(self.world.size)]
        dist.all_gather(parts, tensor, group=self.control)
        return torch.stack(parts)
