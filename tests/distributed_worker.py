"""One rank of a tiny training run under torchrun, with injected events; driven by test_distributed.py.

torchrun --standalone --nproc-per-node=2 tests/distributed_worker.py CORPUS OUT --steps 20 [--stop-at 10]
    [--resume] [--nan-at RANK:STEP] [--fail-at RANK:STEP] [--full-disk]
"""

from __future__ import annotations

import argparse
import errno
import math
import signal
import sys
from typing import Any

import torch

from charrnn.errors import Interrupted
from charrnn.store import checkpoint
from charrnn.training.distributed import world_from_env
from charrnn.training.loop import Trainer
from charrnn.training.options import TrainOptions
from tests.test_resume import tiny


def rank_step(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    rank, step = text.split(":")
    return int(rank), int(step)


class Injected(Trainer):
    """A Trainer that is signalled, sees NaN or fails at chosen steps of chosen ranks."""

    stop_at: int | None = None
    nan_at: tuple[int, int] | None = None
    fail_at: tuple[int, int] | None = None

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rank, upcoming = self.parts.world.rank, self.state.step + 1
        if self.nan_at == (rank, upcoming):
            handle = self.model.head.register_forward_hook(lambda m, a, out: out * math.nan)
            try:
                return super().step(lr)
            finally:
                handle.remove()
        if self.fail_at == (rank, upcoming):
            raise RuntimeError(f"injected failure on rank {rank}")
        out = super().step(lr)
        if self.stop_at == self.state.step and rank == 0:  # Ctrl-C reaching rank 0 only
            self.interrupted = signal.SIGINT
        return out


class Printer:
    """Warnings to stderr, so the test can see what rank 0 reported."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None

    def on_warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--nan-at")
    parser.add_argument("--fail-at")
    parser.add_argument("--full-disk", action="store_true", help="every checkpoint write fails (ENOSPC)")
    args = parser.parse_args()
    if args.resume:
        options = TrainOptions(corpus=(), resume=args.out, threads=1)
    else:
        extra = {"save_every": "3", "eval_every": "1000"} if args.full_disk else {}
        options = tiny(args.corpus, args.out, steps=args.steps, batch_size=8, **extra)
    if args.full_disk:

        def no_space(path: object, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        checkpoint.atomic_write = no_space  # type: ignore[assignment]
    Injected.stop_at, Injected.nan_at, Injected.fail_at = args.stop_at, rank_step(args.nan_at), rank_step(args.fail_at)
    try:
        result = Injected(options, Printer()).run()
    except Interrupted as exc:
        sys.exit(exc.exit_code)
    if world_from_env().is_main:
        print(f"done {result.steps} {result.stop_reason}")


if __name__ == "__main__":
    main()
