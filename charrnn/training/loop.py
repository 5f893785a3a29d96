"""The training loop: truncated BPTT over carried streams, AdamW, clipping, warmup + decay, budgets.

`Trainer.loop` reads top to bottom: lr -> step -> health -> decide -> log -> validate -> save -> stop.
The trainer is composed of parts, each readable alone: the run's opened parts (training.parts,
built by training.setup), the step and what it trains (training.step), saving, restoring and
rollback (training.checkpointing), validation and its stopping rule (training.validation), what
the run says about itself (training.describe), its files (training.run_store) and signals
(training.signals). Everything a run needs to continue exactly goes into its checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from charrnn.errors import Interrupted
from charrnn.model import CharRNN
from charrnn.store.meta import RunState
from charrnn.store.runs import BEST, LAST
from charrnn.training.checkpointing import Checkpoints
from charrnn.training.config import TrainConfig
from charrnn.training.describe import banner, record, resolved, resume_notes, stop_note
from charrnn.training.observer import TrainObserver, TrainResult
from charrnn.training.options import TrainOptions
from charrnn.training.run_store import json_number, newer_best
from charrnn.training.setup import open_run
from charrnn.training.signals import exit_code, signal_name, stop_requests
from charrnn.training.step import Stepper
from charrnn.training.validation import TURNED_CHECKS, TURNED_MARGIN, Validation

__all__ = ["TURNED_CHECKS", "TURNED_MARGIN", "Trainer", "train"]  # (the stopping rule's, from training.validation)

LOG_EVERY_S = 2.0
ELAPSED_PRECISION_S = 0.001  # checkpoints store the run's elapsed time rounded to this
STOP_REASONS = ("", "steps", "time", "epochs")  # budgets, in the order `budget_reason` checks them


@dataclass(frozen=True)
class Decision:
    """What this step's end calls for, agreed by all ranks."""

    stop: str | None  # a spent budget's name
    log: bool
    validate: bool
    save: bool
    signal: int  # a stop request (SIGINT/SIGTERM) from any rank, or 0


@dataclass
class Marks:
    """When the loop last logged, validated and saved (perf_counter seconds, and the save's step)."""

    log: float
    eval: float
    save: float
    save_step: int
    log_step: int


class Trainer:
    """One run: opened by training.setup, then trained by its parts until a budget or a rule stops it."""

    def __init__(self, options: TrainOptions, observer: TrainObserver | None = None) -> None:
        """Open the run (training.setup) and compose its parts; a resumed run is put back as saved."""
        parts, resume = open_run(options, observer)
        self.parts = parts
        self.observer = parts.observer
        self.state = RunState()  # the counters, shared by every part and restored in place
        self.interrupted: int | None = None  # the signal that asked us to stop
        self.check_each_step = parts.device.type == "cpu"  # a host sync is free on CPU, costly on a GPU
        self.metrics_failing = False
        try:
            self.stepper = Stepper(
                model=parts.model,
                net=parts.net,
                optimizer=parts.optimizer,
                ema=parts.ema,
                batcher=parts.batcher,
                config=parts.config,
                rows=parts.rows,
                device=parts.device,
                dtype=parts.dtype,
                distributed=parts.world.distributed,
                state=self.state,
            )
            self.checkpoints = Checkpoints(
                stepper=self.stepper,
                state=self.state,
                store=parts.store,
                team=parts.team,
                config=parts.config,
                vocab=parts.corpus.vocab,
                record=partial(record, parts),
                observer=self.observer,
                max_save_failures=parts.options.max_save_failures,
            )
            best_on_disk = None
            if resume is not None:
                self.checkpoints.restore(resume)
                parts.store.truncate_metrics(self.state.step)
                best_on_disk = newer_best(parts.run_dir / BEST, self.state.step)
            self.validation = Validation(
                stepper=self.stepper,
                val_ids=parts.val_ids,
                team=parts.team,
                config=parts.config,
                state=self.state,
                checkpoints=self.checkpoints,
                log_row=self.log_row,
                observer=self.observer,
                estimate_s=parts.val_estimate_s,
                best_on_disk=best_on_disk,
            )
            parts.store.write_config(resolved(parts))
        except BaseException:
            parts.close(clean=False)
            raise

    @property
    def model(self) -> CharRNN:
        return self.parts.model

    @property
    def config(self) -> TrainConfig:
        return self.parts.config

    @property
    def run_dir(self) -> Path:
        return self.parts.run_dir

    def release_run(self) -> None:
        """Give back what a trainer built but never run holds (`run` does it itself)."""
        self.parts.held.release()

    def run(self) -> TrainResult:
        """Train until a budget, patience or a signal stops the run; then validate and save.

        Ctrl-C / SIGTERM finish the current step, save `last` and raise `Interrupted`.
        """
        clean = False
        try:
            result = self.loop()
            clean = True
            return result
        except Interrupted:
            clean = True
            raise
        finally:
            self.stepper.net = self.parts.net = self.parts.model  # DDP's reducer goes before its process group
            self.parts.close(clean)

    def loop(self) -> TrainResult:
        parts, validation = self.parts, self.validation
        self.stepper.net.train()
        self.observer.on_start(banner(parts, self.state))
        for message in parts.warnings:
            self.observer.on_warning(message)
        t0 = time.perf_counter() - self.state.elapsed_s  # a resumed run keeps its clock
        start = time.perf_counter()
        marks = Marks(log=start, eval=start, save=start, save_step=self.state.step, log_step=self.state.step)
        self.loss_sum = torch.zeros((), device=parts.device)
        self.loss_count = torch.zeros((), device=parts.device)
        # a resumed run may have no budget left: judged with the reserve it stopped with (`elapsed_s` is
        # stored to the millisecond, hence the margin)
        stop = self.budget_reason(self.state.elapsed_s + validation.reserve_s + ELAPSED_PRECISION_S)
        for message in resume_notes(parts, self.state, stop, validation.validation_turned):
            self.observer.on_warning(message)
        with stop_requests(self.request_stop, parts.world.distributed):
            while stop is None:
                lr = self.lr_now(t0)
                loss, grad_norm, bad = self.step(lr)
                self.loss_sum += torch.where(bad, 0.0, loss)
                self.loss_count += (~bad).float()
                rolled_back = self.check_each_step and self.check_health()
                now = time.perf_counter()
                self.state.elapsed_s = now - t0
                self.state.val_reserve_s = validation.reserve_s  # the reserve this step's stop is decided with
                decision = self.decide(now, t0, marks)
                stop = decision.stop
                if decision.log or decision.stop or decision.signal:
                    rolled_back = (not self.check_each_step and self.check_health()) or rolled_back
                    self.log(lr, grad_norm, now, t0, marks)
                if rolled_back:  # back at the last checkpoint: the budget is not spent
                    marks.save_step, marks.log_step = self.state.step, min(marks.log_step, self.state.step)
                    if not decision.signal:
                        stop = None
                        continue
                if decision.validate and not stop:
                    stop = validation.run_validation(t0)
                    marks.eval = time.perf_counter()
                    marks.log += marks.eval - now  # throughput counts training time only
                if decision.save and not stop:
                    self.checkpoints.try_save(LAST)
                    marks.save, marks.save_step = time.perf_counter(), self.state.step
                    marks.log += marks.save - now
                if decision.signal and not stop:
                    stop = signal_name(decision.signal)
            return self.finish(stop, t0)

    # -- the loop's steps ----------------------------------------------------------------------

    def lr_now(self, t0: float) -> float:
        """The schedule's lr for the next step (progress counts the final validation as spent)."""
        elapsed = time.perf_counter() - t0 + self.validation.reserve_s
        progress = self.config.progress(self.state.step, elapsed, self.stepper.epochs_done())
        return self.config.lr_at(self.state.step, progress) * self.state.lr_scale

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training step at `lr` (training.step); returns (loss, grad_norm, bad) as device tensors."""
        return self.stepper.step(lr)

    def check_health(self) -> bool:
        """Report skipped NaN/inf steps; after `max_bad_steps` in a row roll back (True) or give up."""
        skipped, bad_steps = self.stepper.take_bad_counts()
        if not skipped:
            return False
        step = self.state.step
        where = f"step {step}" if skipped == 1 else f"{skipped} steps up to step {step}"
        self.observer.on_warning(f"{where}: loss or gradients are NaN/inf; update skipped")
        if bad_steps < self.parts.options.max_bad_steps:
            return False
        self.checkpoints.roll_back(bad_steps)
        self.stepper.clear_bad_run()
        return True

    def decide(self, now: float, t0: float, marks: Marks) -> Decision:
        """What is due after this step, agreed by all ranks (one collective)."""
        state, config, validation = self.state, self.config, self.validation
        wanted = self.parts.team.agree(
            [
                STOP_REASONS.index(self.budget_reason(now - t0 + validation.reserve_s) or ""),
                now - marks.log >= LOG_EVERY_S,
                validation.has_val and config.eval_every.due(state.step, state.last_eval_step, now, marks.eval),
                config.save_every.due(state.step, marks.save_step, now, marks.save),
                self.interrupted or 0,
            ]
        )
        if wanted[4]:
            self.interrupted = wanted[4]  # another rank's Ctrl-C stops this one too
        return Decision(STOP_REASONS[wanted[0]] or None, bool(wanted[1]), bool(wanted[2]), bool(wanted[3]), wanted[4])

    def log(self, lr: float, grad_norm: torch.Tensor, now: float, t0: float, marks: Marks) -> None:
        """A train row: mean loss since the last row (summed over ranks), throughput, lr, grad norm."""
        sums = self.parts.team.sum(torch.stack([self.loss_sum, self.loss_count]))
        total_loss, count = (float(v) for v in sums)
        train_loss = total_loss / count if count else math.nan
        state, passes = self.state, self.stepper.epochs_done
        row = {
            "event": "train",
            "step": state.step,
            "epoch": round(passes(), 4),
            "elapsed_s": round(state.elapsed_s, 3),
            "chars_per_s": round(
                (state.step - marks.log_step) * self.parts.batcher.chars_per_window / max(now - marks.log, 1e-9), 1
            ),
            "lr": lr,
            "train_loss": json_number(train_loss),
            "train_bpc": json_number(train_loss / math.log(2)),
            "grad_norm": json_number(float(grad_norm.item())),
            # of the whole run, the final validation included (the lr schedule's `progress`
            # counts that validation as spent already, to reach zero at the last step)
            "progress": round(self.config.progress(state.step, now - t0, passes()), 4),
        }
        self.log_row(row)
        self.observer.on_log(row)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        marks.log, marks.log_step = now, state.step

    def log_row(self, row: dict[str, Any]) -> None:
        """A metrics.jsonl row; a failed write is warned about (once in a row) and training goes on."""
        failure = self.parts.store.append_metrics(row)
        if failure and not self.metrics_failing:
            self.observer.on_warning(f"{failure}; training goes on")
        self.metrics_failing = failure is not None

    def request_stop(self, signum: int) -> None:
        self.interrupted = signum

    def budget_reason(self, elapsed: float) -> str | None:
        config, state = self.config, self.state
        if config.steps is not None and state.step >= config.steps:
            return "steps"
        if config.time_s is not None and elapsed >= config.time_s:
            return "time"
        if config.epochs is not None and self.stepper.epochs_done() >= config.epochs:
            return "epochs"
        return None

    def finish(self, stop: str, t0: float) -> TrainResult:
        """The final validation and saves; `Interrupted` after a signal, once `last` is written."""
        state, validation = self.state, self.validation
        interrupted = self.interrupted is not None and stop == signal_name(self.interrupted)
        if validation.has_val and state.last_eval_step != state.step and not interrupted:
            validation.run_validation(t0)
        if not validation.has_val:
            self.observer.on_warning("no validation text (--val-frac 0 or a tiny corpus): best = last")
        last_path = self.checkpoints.final_save(LAST)
        best_path = self.run_dir / BEST
        if not self.parts.team.share(best_path.exists()):
            self.checkpoints.final_save(BEST)
        result = TrainResult(
            run_dir=self.run_dir,
            best_path=best_path,
            last_path=last_path,
            best_val_loss=state.best_val_loss,
            steps=state.step,
            epochs=self.stepper.epochs_done(),
            elapsed_s=time.perf_counter() - t0,
            chars_per_s=state.step * self.parts.batcher.chars_per_window / max(state.elapsed_s, 1e-9),
            stop_reason=stop,
            stop_note=stop_note(self.parts, state, stop),
        )
        self.observer.on_end(result)
        if interrupted and self.interrupted is not None:
            raise Interrupted(
                f"{stop} at step {state.step}; saved {last_path}; continue with: charrnn train --resume {self.run_dir}",
                exit_code(self.interrupted),
            )
        return result


def train(options: TrainOptions, observer: TrainObserver | None = None) -> TrainResult:
    """Train a model as `charrnn train` does; returns where the checkpoints are and how it went."""
    return Trainer(options, observer).run()
