"""The torch backend of generation: a CharRNN on any device, its primes through the fused forward."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import partial

import numpy as np
import torch
from torch import Tensor

from charrnn.model import CharRNN, State
from charrnn.sampling.engine import as_numpy
from charrnn.sampling.steppers import Stepper, check_engine, make_stepper
from charrnn.sampling.threads import auto_threads, sampling_threads

PRIME_WINDOW = 4096  # the prime is fed in windows of this many characters


@torch.inference_mode()
def feed_prime(model: CharRNN, start: list[int], device: torch.device) -> tuple[Tensor, State]:
    """Run the prime through the model's own (fused) forward: last logits [1, V] and the state."""
    state: State | None = None
    ids = torch.tensor([start], dtype=torch.long, device=device)
    for begin in range(0, ids.size(1), PRIME_WINDOW):
        logits, state = model(ids[:, begin : begin + PRIME_WINDOW], state)
    assert state is not None
    return logits[:, -1].float(), state


def repeat_state(state: State, count: int) -> State:
    if isinstance(state, tuple):
        return tuple(s.repeat(1, count, 1) for s in state)  # type: ignore[return-value]
    return state.repeat(1, count, 1)


def cat_state(a: State, b: State) -> State:
    """Two batches of recurrent state side by side: [L, N1, H] + [L, N2, H] -> [L, N1+N2, H]."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple)
        return tuple(torch.cat([x, y.to(x)], dim=1) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
    assert isinstance(b, Tensor)
    return torch.cat([a, b.to(a)], dim=1)


class TorchBackend:
    """A model as it is loaded (`charrnn.load`, `open_model`): `engine` and `weights` pick the stepper."""

    def __init__(
        self, model: CharRNN, chars: Sequence[str], device: torch.device | str = "cpu", engine: str = "fast",
        weights: str = "fp32",
    ) -> None:  # fmt: skip
        self.model = model.eval()
        self.chars = chars
        self.device = torch.device(device)
        self.engine, self.weights = engine, weights
        check_engine(model, engine, weights)  # now, before any text

    def stepper(self) -> Stepper:
        return make_stepper(self.model, self.engine, self.weights)

    def prime(self, start: list[int]) -> tuple[np.ndarray, State]:
        logits, state = feed_prime(self.model, start, self.device)
        return as_numpy(logits), state

    def repeat(self, state: State, count: int) -> State:
        return repeat_state(state, count)

    def threads(self, count: int) -> AbstractContextManager[None]:
        return partial(sampling_threads, count, self.engine, self.weights, self.device)()

    def default_threads(self, rows: int) -> int:
        return auto_threads(rows, self.engine, self.weights)
