"""A run's opened parts (`RunParts`), as training.setup builds them and the trainer is composed from.

`Held` is what a run takes from its process (the run directory's lock, the TF32 setting) and
gives back when it ends, or when opening it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.data.batches import StreamBatcher
from charrnn.data.corpus import Corpus
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.lock import RunLock
from charrnn.training.config import TrainConfig
from charrnn.training.distributed import Team, World
from charrnn.training.ema import WeightAverage
from charrnn.training.observer import TrainObserver
from charrnn.training.options import TrainOptions
from charrnn.training.probe import Speed
from charrnn.training.run_store import RunStore


def set_tf32(on: bool) -> bool:
    """Let cuBLAS's fp32 matmuls use TF32 tensor cores (cuDNN's do by default); returns the previous setting."""
    before = bool(torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = on
    return before


class Held:
    """What a run takes from its process and gives back at its end, or when opening it fails:
    its run directory (a lock, on rank 0) and the process's TF32 setting."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None  # this process owns the run directory while it holds this
        self.tf32_before: bool | None = None  # the process's TF32 setting, where this run changed it

    def use_tf32(self, on: bool) -> None:
        """TF32 matmuls on or off for this run; `release` puts the caller's setting back."""
        before = set_tf32(on)
        if self.tf32_before is None:
            self.tf32_before = before

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.tf32_before is not None:
            set_tf32(self.tf32_before)
            self.tf32_before = None


@dataclass
class RunParts:
    """One run's opened parts. Not a value: it holds the process group, the run directory's lock
    and the model being trained; `close` gives back what the run took from the process."""

    options: TrainOptions  # as given, merged with a resumed run's
    observer: TrainObserver  # rank 0's; the other ranks' are silent
    world: World
    team: Team
    held: Held
    device: torch.device
    dtype: torch.dtype
    dtype_note: str  # how `--dtype auto` chose, where it measured
    plan_why: tuple[str, ...]  # the reason for each of the plan's choices (a new run's)
    threads: int
    speed: Speed  # this machine's training rate, measured or assumed
    corpus: Corpus
    train_ids: np.ndarray
    val_ids: np.ndarray  # what validation scores: the first `val_max_chars` of the held-out text
    val_estimate_s: float  # a validation's seconds on this rank, before one is timed
    model_config: ModelConfig
    config: TrainConfig
    rows: slice  # this rank's share of the batch's streams
    batcher: StreamBatcher
    run_dir: Path
    store: RunStore
    model: CharRNN
    net: torch.nn.Module  # the module a step calls: DDP around the model under torchrun, else the model
    optimizer: torch.optim.Optimizer
    ema: WeightAverage | None
    resumed_from: str | None  # the checkpoint a resumed run continues
    warnings: list[str]  # reported once the run starts

    def planned_epochs(self) -> float | None:
        """The passes the plan stops at (no --epochs given, and the plan set them), else None."""
        return self.config.epochs if self.options.epochs is None else None

    def close(self, clean: bool) -> None:
        """Leave the process group (after the other ranks, if `clean`), then give back what the run held."""
        self.team.close(clean)
        self.held.release()
