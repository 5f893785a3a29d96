"""What the generation engine runs on: a model's primes, its stepper and its threads.

Two backends: `TorchBackend` (charrnn.sampling.torch_backend: any device, every engine, the
model's fused forward for primes) and `NumpyBackend` (charrnn.sampling.numpy_backend: a
checkpoint's arrays on the CPU, the same step in numpy's BLAS, without importing torch). The
engine, the controls and the seeded uniforms are shared, so a seed gives the same text on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from charrnn.sampling.steppers_protocol import Stepper


class Backend(Protocol):
    @property
    def chars(self) -> Sequence[str]:
        """The model's characters, in id order."""
        ...

    def stepper(self) -> Stepper:
        """A fresh stepper for one batch of rows."""
        ...

    def prime(self, start: list[int]) -> tuple[np.ndarray, Any]:
        """The prime fed from a zero state: the last logits [1, V] and the state [L, 1, H]."""
        ...

    def repeat(self, state: Any, count: int) -> Any:
        """One row's state [L, 1, H] as `count` rows [L, count, H]."""
        ...

    def threads(self, count: int) -> AbstractContextManager[None]:
        """`count` threads to whichever pool runs the step's products, for the duration."""
        ...

    def default_threads(self, rows: int) -> int:
        """The threads `rows` rows take when the caller does not say (charrnn.sampling.threads)."""
        ...
