"""The stepper protocol, without torch (charrnn.sampling.steppers and .blas implement it)."""

from __future__ import annotations

from typing import Any, Protocol


class Stepper(Protocol):
    """Advances N streams by one character: ids [N] -> logits [N, V] (fp32). Ids, row numbers and
    states may come as numpy arrays or torch tensors; each stepper converts to what it computes in."""

    def step(self, ids: Any) -> Any: ...

    def load_state(self, state: Any) -> None: ...

    def extend(self, state: Any) -> None: ...

    def select(self, rows: Any) -> None: ...

    def state(self) -> Any: ...
