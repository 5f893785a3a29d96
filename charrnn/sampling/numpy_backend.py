"""The numpy backend of generation: a checkpoint's arrays on the CPU, no torch imported.

`charrnn sample` on the CPU with the fp32 `fast` engine (the default) starts here: the weights come
from the file with charrnn.store.light (digest and schema checked as ever), the prime is fed one
character at a time through the same numpy step that then samples (charrnn.sampling.blas), and
the engine is the one every command uses. torch's fused forward feeds a prime faster, but importing
torch costs a second before the first character; a long prime costs this path 60-80 us a character.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np

from charrnn.sampling.blas import BlasStepper, NumpyState
from charrnn.sampling.threads import auto_threads, numpy_threads
from charrnn.store.light import LightCheckpoint, load_light
from charrnn.store.runs import resolve_checkpoint


class NumpyBackend:
    def __init__(self, checkpoint: LightCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.chars = checkpoint.vocab.chars
        self.weights = BlasStepper.from_arrays(self.config, checkpoint.weights)  # laid out once, for every stepper

    def stepper(self) -> BlasStepper:
        return self.weights.fresh()

    def prime(self, start: list[int]) -> tuple[np.ndarray, NumpyState]:
        stepper = self.stepper()
        zeros = np.zeros((self.config.num_layers, 1, self.config.hidden_size), dtype=np.float32)
        stepper.load_state((zeros, zeros.copy()) if self.config.cell == "lstm" else zeros)
        logits = np.empty(0, dtype=np.float32)
        for char_id in start:
            logits = stepper.step_numpy(np.array([char_id], dtype=np.int64))
        return logits, stepper.state()

    def repeat(self, state: NumpyState, count: int) -> NumpyState:
        if isinstance(state, tuple):
            return (np.repeat(state[0], count, axis=1), np.repeat(state[1], count, axis=1))
        return np.repeat(state, count, axis=1)

    def threads(self, count: int) -> AbstractContextManager[None]:
        return numpy_threads(count)

    def default_threads(self, rows: int) -> int:
        return auto_threads(rows, "fast", "fp32")


def open_numpy(path: str | None) -> NumpyBackend:
    """The checkpoint `path` names (a file, a run directory's best, or the newest run's best), in numpy."""
    return NumpyBackend(load_light(resolve_checkpoint(path)))


def runs_without_torch(device: str, engine: str, weights: str, adapt: int) -> bool:
    """Whether `charrnn sample` with these options starts on the numpy backend: the CPU, the fp32
    `fast` engine, no `--adapt` (it learns, with autograd). Anything else loads torch."""
    return device == "cpu" and engine == "fast" and weights == "fp32" and adapt == 0
