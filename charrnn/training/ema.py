"""`--ema DECAY`: an exponential moving average of the weights, what the run validates and saves.

After every step the average moves toward the weights: avg += (1 - d) (w - avg), with
d = min(DECAY, (1 + step) / (10 + step)), so the first steps, far from where training is going,
weigh little for long (an average from the random start would need thousands of steps to forget
it). Validation scores the average and checkpoints store it as the model (`model.*`, what
`sample`, `eval` and every other command read); the weights being trained go beside it as `raw.*`,
so that `--resume` continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.average = [p.detach().clone() for p in model.parameters()]

    def rate(self, step: int) -> float:
        """The decay at `step` (counted from 0): DECAY, or less while the run is young."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average toward the weights after step `step` (a skipped step left them as they were)."""
        torch._foreach_lerp_(self.average, [p.detach() for p in model.parameters()], 1.0 - self.rate(step))

    def state_dict(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.average, strict=True))

    @torch.no_grad()
    def load(self, weights: dict[str, Tensor]) -> None:
        for name, tensor in zip(self.names, self.average, strict=True):
            tensor.copy_(weights[name])

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """The model holds the average for the duration (a validation), its own weights after."""
        params: list[Tensor] = list(model.parameters())
        with torch.no_grad():
            kept = [p.detach().clone() for p in params]
            torch._foreach_copy_(params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, kept)
