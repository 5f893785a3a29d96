"""Validation during training: the held-out loss, the best checkpoint, and the rules that stop a run on it.

A run validates every `eval_every` and once more after its last step. An improvement is saved as
best.safetensors; `--patience N` stops the run after N checks without one, and without it the
run stops once its validation has clearly turned (`validation_turned`). Under a time budget the
last validation's duration is kept back from the budget (`reserve_s`), so `--time X` ends near X.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from charrnn.evaluate import evaluate_ids
from charrnn.store.meta import RunState
from charrnn.store.runs import BEST
from charrnn.training.checkpointing import Checkpoints
from charrnn.training.config import TrainConfig
from charrnn.training.distributed import Team
from charrnn.training.observer import TrainObserver
from charrnn.training.run_store import json_number
from charrnn.training.step import Stepper

FINAL_VAL_MAX_SHARE = 0.25  # of a time budget, at most, kept for the final validation
# Without --patience a run stops itself once its validation has clearly turned: this many checks in
# a row without a new best, the last this far (nats/char) above it, after the first pass over the
# text. Training on only overfits more.
TURNED_CHECKS, TURNED_MARGIN = 3, 0.02


class Validation:
    """Scores the held-out text with the model the stepper trains, and keeps the best checkpoint."""

    def __init__(
        self,
        stepper: Stepper,
        val_ids: np.ndarray,
        team: Team,
        config: TrainConfig,
        state: RunState,
        checkpoints: Checkpoints,
        log_row: Callable[[dict[str, Any]], None],
        observer: TrainObserver,
        estimate_s: float,
        best_on_disk: float | None,
    ) -> None:
        self.stepper = stepper  # its model (or weight average) is scored; its passes gate the stopping rule
        self.val_ids = val_ids  # the first `val_max_chars` of the held-out text
        self.has_val = val_ids.size >= 2
        self.team = team
        self.config = config
        self.state = state
        self.checkpoints = checkpoints
        self.log_row = log_row
        self.observer = observer
        self.best_on_disk = best_on_disk  # a best saved after the checkpoint the run resumed from
        # a resumed run keeps the reserve it measured, not a fresh estimate
        self.reserve_s = self.final_validation_reserve(state.val_reserve_s or estimate_s)

    def final_validation_reserve(self, seconds: float) -> float:
        """Seconds of a time budget kept for the validation that follows the last step (0 without one).

        `--time X` then ends near X, not X plus a validation (6 s for 2x512 on two cores). It is the
        last validation's measured time, or an estimate before the first; never over a quarter of X.
        """
        if not self.has_val or self.config.time_s is None:
            return 0.0
        return min(seconds, FINAL_VAL_MAX_SHARE * self.config.time_s)

    def validate(self) -> float:
        """Validation loss; under torchrun each rank scores its share and the sums are all-reduced."""
        world, model, ema = self.team.world, self.stepper.model, self.stepper.ema
        shard = (world.rank, world.size)
        start = time.perf_counter()
        with ema.swapped_in(model) if ema is not None else nullcontext():  # --ema: the average's
            result = evaluate_ids(
                model,
                self.val_ids,
                self.stepper.device,
                self.stepper.dtype,
                shard=shard,
                reduce=self.team.sum,
                gather=lambda rows: self.team.gather_rows(rows, 1),
            )
        self.reserve_s = self.final_validation_reserve(time.perf_counter() - start)
        return result.loss

    def run_validation(self, t0: float) -> str | None:
        """Validate, record, keep the best checkpoint; "patience" or "overfitting" when that stops the run."""
        val_loss = self.validate()
        state = self.state
        improved = math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss)
        state.last_eval_step = state.step
        row = {
            "event": "val",
            "step": state.step,
            "epoch": round(self.stepper.epochs_done(), 4),
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "val_loss": json_number(val_loss),
            "val_bpc": json_number(val_loss / math.log(2)),
            "best": improved,
        }
        state.history.append(row)  # before saving, so the best checkpoint's history includes it
        if improved:
            state.best_val_loss, state.best_step = val_loss, state.step
            state.evals_without_improvement = 0
            if self.best_on_disk is None or val_loss < self.best_on_disk:  # never replace a better best
                self.checkpoints.try_save(BEST)
                self.best_on_disk = None
        else:
            state.evals_without_improvement += 1
        self.log_row(row)
        self.observer.on_eval(row)
        patience = self.config.patience
        if patience is not None:
            return "patience" if state.evals_without_improvement >= patience else None
        return "overfitting" if self.validation_turned(val_loss) else None

    def validation_turned(self, val_loss: float) -> bool:
        """The default stopping rule: `TURNED_CHECKS` validations without a new best, and the last one
        `TURNED_MARGIN` above the best (a flat curve goes on: it may still improve). Only in a second
        pass or later: before the model has seen the text twice a rise is noise, not overfitting."""
        state = self.state
        best = state.best_val_loss
        return (
            self.stepper.epochs_done() >= 1
            and state.evals_without_improvement >= TURNED_CHECKS
            and best is not None
            and not val_loss <= best + TURNED_MARGIN  # NaN counts as turned
        )
