"""The knobs of dynamic evaluation and prime adaptation, declared once (no torch: the CLI reads them at start)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from charrnn.errors import ConfigError

DEFAULT_LR = 0.0005
DEFAULT_SEQ = 50
DEFAULT_DECAY = 0.0
RULES = ("sgd", "rms")


@dataclass(frozen=True)
class AdaptSettings:
    """How the copy learns: step size, segment length (predictions per step), pull back to the original."""

    lr: float = DEFAULT_LR
    seq: int = DEFAULT_SEQ
    decay: float = DEFAULT_DECAY
    rule: str = "rms"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--dynamic-lr must be a number above 0, got {self.lr}")
        if self.seq < 1:
            raise ConfigError(f"--dynamic-seq must be at least 1, got {self.seq}")
        if not (math.isfinite(self.decay) and 0 <= self.decay < 1):
            raise ConfigError(f"--dynamic-decay must be in [0, 1), got {self.decay}")
        if self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}; use one of {', '.join(RULES)}")

    def to_dict(self) -> dict[str, float | int | str]:
        return {"lr": self.lr, "seq": self.seq, "decay": self.decay}
