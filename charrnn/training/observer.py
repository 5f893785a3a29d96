"""What a run reports while it trains (`TrainObserver`) and what it returns (`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_path: Path
    last_path: Path
    best_val_loss: float | None
    steps: int
    epochs: float
    elapsed_s: float
    chars_per_s: float
    stop_reason: str  # steps, time, epochs, patience, overfitting, or a signal's name
    stop_note: str = ""  # why, where the run stopped itself (the plan's passes, a turned validation)


class TrainObserver(Protocol):
    """Where the loop reports; the CLI renders these on stderr. All methods are optional no-ops.

    `on_start` gets the banner facts, and under "sample" a callable `(length) -> str` that samples
    from the model as it is at that moment (used to show a line of text at each validation).
    """

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_log(self, row: dict[str, Any]) -> None: ...
    def on_eval(self, row: dict[str, Any]) -> None: ...
    def on_warning(self, message: str) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


class SilentObserver:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_log(self, row: dict[str, Any]) -> None:
        pass

    def on_eval(self, row: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        pass

    def on_end(self, result: TrainResult) -> None:
        pass
