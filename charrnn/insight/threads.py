"""How many CPU threads a step-by-step pass should use: one for small layers (the per-step
products are too small to split, and a shared machine makes every extra thread wait), else the
idle cores."""

from __future__ import annotations

import os

import torch

from charrnn.device import available_cores, busy_cores, configure_threads, idle_cores
from charrnn.model import ModelConfig

SMALL = 256  # hidden units below which one thread is faster


def choose_threads(config: ModelConfig, device: torch.device, threads: int | None = None) -> int:
    """Set torch's threads for a pass over `config`'s model and return the count."""
    if device.type != "cpu":
        return configure_threads(threads)
    if threads is None:
        small = config.hidden_size < SMALL
        threads = 1 if small else idle_cores(available_cores(), busy_cores(), os.cpu_count())
    return configure_threads(threads)
