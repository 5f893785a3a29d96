"""The knobs of dynamic evaluation and prime adaptation, declared once (no torch: the CLI reads them at start).

The defaults are measured (benchmarks/DYNAMIC.md): on a 2x512 LSTM and Tiny Shakespeare's held-out
text, lr 5e-4 with 50-character segments scored lowest among lr 1e-4..3e-3 and seq 25/50/100,
and seq 50 runs about 1.7x the chars/s of seq 25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from charrnn.errors import ConfigError

DEFAULT_LR = 0.0005
DEFAULT_SEQ = 50
# CPU threads the commands give a learning pass unless told otherwise. One stream a segment at a time
# gains little from a second thread and a thread on a busy core stalls every step (2x512: 15 vs 747
# chars/s on 2 busy cores); and the last digits of the result depend on the thread count, so a
# count taken from the machine's load would make the same command print different figures.
LEARN_THREADS = 1


@dataclass(frozen=True)
class AdaptSettings:
    """How the copy learns: the step size and the segment length (predictions per update)."""

    lr: float = DEFAULT_LR
    seq: int = DEFAULT_SEQ
    flags: str = field(default="--dynamic", compare=False, repr=False)  # errors name --dynamic-lr or --adapt-lr

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"{self.flags}-lr must be a number above 0, got {self.lr}")
        if self.seq < 1:
            raise ConfigError(f"{self.flags}-seq must be at least 1, got {self.seq}")

    def to_dict(self) -> dict[str, float | int]:
        return {"lr": self.lr, "seq": self.seq}
