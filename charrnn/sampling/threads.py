"""How many threads sampling uses, and which thread pool gets them.

CPU fp32 `fast` steps run their products in numpy's BLAS, everything else in torch's OpenMP team;
the pool that does not run the products is held at one thread while sampling.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from charrnn.cores import available_cores, busy_cores, idle_cores
from charrnn.errors import ConfigError

if TYPE_CHECKING:
    import torch


def runs_in_numpy(engine: str, weights: str, device: Any = "cpu") -> bool:
    """The `fast` engine in fp32 on the CPU steps in numpy (charrnn.sampling.blas); everything else in torch."""
    return engine == "fast" and weights == "fp32" and getattr(device, "type", device) == "cpu"


@contextmanager
def numpy_threads(count: int) -> Iterator[None]:
    """For the duration: `count` threads to numpy's BLAS (the torch-free start: no torch pool to quiet)."""
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    with threadpool_limits(limits=count, user_api="blas"):
        yield


@contextmanager
def sampling_threads(count: int, engine: str, weights: str, device: torch.device) -> Iterator[None]:
    """For the duration: `count` threads to the pool that runs the step's products, one to the other.

    CPU fp32 `fast` products run in numpy's BLAS, `module` and int8 in torch's OpenMP team; both
    pools spinning on the same cores made a step 80x slower. The caller's settings come back after.
    """
    import torch

    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    before = torch.get_num_threads()
    blas = runs_in_numpy(engine, weights, device)
    try:
        torch.set_num_threads(1 if blas else count)
        # Only the numpy path touches numpy's BLAS: elsewhere (aarch64 wheels) torch may share it.
        with threadpool_limits(limits=count, user_api="blas") if blas else nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


ONE_STREAM_BLAS_THREADS = 2  # measured: 1.4-1.8x over one thread on 2 cores; more is unmeasured


def default_threads(num_samples: int, engine: str, weights: str, idle: int) -> int:
    """CPU threads for sampling, given how many of this process's cores are idle (device.idle_cores).

    numpy's BLAS (the fp32 `fast` engine on the CPU) splits even one stream's products over two
    cores (a step 265 vs 432 us); more threads for one matrix-vector product were not measured to
    help, so one stream takes at most ONE_STREAM_BLAS_THREADS. torch's OpenMP team does not speed
    one stream up, so `module` and int8 keep it at 1 there. Many streams take every idle core.
    Busy cores are never worth it: a thread descheduled by another process stalls the rest
    (one stream: 742 vs 361 us with 2 threads on 2 cores, one busy).
    """
    if num_samples > 1:
        return idle
    return min(idle, ONE_STREAM_BLAS_THREADS) if runs_in_numpy(engine, weights) else 1


def auto_threads(num_samples: int, engine: str, weights: str) -> int:
    """`default_threads` for this machine as it is now."""
    cores = available_cores()
    return default_threads(num_samples, engine, weights, idle_cores(cores, busy_cores(), os.cpu_count()))
