"""The training loop: truncated BPTT over carried streams, AdamW, clipping, warmup + decay, budgets.

`Trainer.loop` reads top to bottom: lr -> step -> health -> decide -> log -> validate -> save -> stop.
Its other duties sit behind names: setup (training.setup), saving, restoring and rollback
(training.checkpointing), files (training.run_store), signals (training.signals). Everything a run
needs to continue exactly goes into its checkpoints.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from charrnn.device import autocast
from charrnn.errors import Interrupted
from charrnn.evaluate import evaluate_ids
from charrnn.store.checkpoint import Checkpoint
from charrnn.store.runs import BEST, LAST
from charrnn.training.carried import group_rows, keep_finite_state, put_group_rows, reset_rows
from charrnn.training.checkpointing import Checkpointing
from charrnn.training.observer import TrainObserver, TrainResult
from charrnn.training.options import TrainOptions
from charrnn.training.run_store import json_number
from charrnn.training.signals import exit_code, signal_name, stop_requests

LOG_EVERY_S = 2.0
ELAPSED_PRECISION_S = 0.001  # checkpoints store the run's elapsed time rounded to this
STOP_REASONS = ("", "steps", "time", "epochs")  # budgets, in the order `budget_reason` checks them
# Without --patience a run stops itself once its validation has clearly turned: this many checks in
# a row without a new best, the last this far (nats/char) above it, after the first pass over the
# text. Training on only overfits more.
TURNED_CHECKS, TURNED_MARGIN = 3, 0.02


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


class Trainer(Checkpointing):
    """Owns one run: model, optimizer, data and run directory."""

    def after_setup(self, resume: Checkpoint | None, base: Checkpoint | None) -> None:
        self.bad_run = torch.zeros((), dtype=torch.int64, device=self.device)  # on device: no sync per step
        self.skipped = torch.zeros((), dtype=torch.int64, device=self.device)  # skipped updates since the check
        self.check_each_step = self.device.type == "cpu"  # a host sync is free on CPU, costly on a GPU
        self.metrics_failing = False
        super().after_setup(resume, base)

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
            self.net = self.model  # DDP's reducer goes before its process group
            self.team.close(clean)
            self.release_run()

    def loop(self) -> TrainResult:
        self.net.train()
        self.observer.on_start(self.banner())
        for message in self.warnings:
            self.observer.on_warning(message)
        t0 = time.perf_counter() - self.state.elapsed_s  # a resumed run keeps its clock
        start = time.perf_counter()
        marks = Marks(log=start, eval=start, save=start, save_step=self.state.step, log_step=self.state.step)
        self.loss_sum = torch.zeros((), device=self.device)
        self.loss_count = torch.zeros((), device=self.device)
        # a resumed run may have no budget left: judged with the reserve it stopped with (`elapsed_s` is
        # stored to the millisecond, hence the margin)
        stop = self.budget_reason(self.state.elapsed_s + self.reserve_s + ELAPSED_PRECISION_S)
        for message in self.resume_notes(stop):
            self.observer.on_warning(message)
        with stop_requests(self.request_stop, self.world.distributed):
            while stop is None:
                lr = self.lr_now(t0)
                loss, grad_norm, bad = self.step(lr)
                self.loss_sum += torch.where(bad, 0.0, loss)
                self.loss_count += (~bad).float()
                rolled_back = self.check_each_step and self.check_health()
                now = time.perf_counter()
                self.state.elapsed_s = now - t0
                self.state.val_reserve_s = self.reserve_s  # the reserve this step's stop is decided with
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
                    stop = self.run_validation(t0)
                    marks.eval = time.perf_counter()
                    marks.log += marks.eval - now  # throughput counts training time only
                if decision.save and not stop:
                    self.try_save(LAST)
                    marks.save, marks.save_step = time.perf_counter(), self.state.step
                    marks.log += marks.save - now
                if decision.signal and not stop:
                    stop = signal_name(decision.signal)
            return self.finish(stop, t0)

    # -- the loop's steps ----------------------------------------------------------------------

    def lr_now(self, t0: float) -> float:
        """The schedule's lr for the next step (progress counts the final validation as spent)."""
        progress = self.config.progress(self.state.step, time.perf_counter() - t0 + self.reserve_s, self.epochs_done())
        return self.config.lr_at(self.state.step, progress) * self.state.lr_scale

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One window: forward under autocast, fp32 loss, backward, clip, AdamW update.

        A step whose loss or gradients are NaN/inf leaves the weights, the optimizer and the
        carried state as they were; that is decided on the device (fused AdamW's `found_inf`),
        so nothing here waits for the GPU. Under torchrun the gradients (and so `grad_norm`)
        are all-reduced first, which makes every rank skip the same steps.
        Returns (loss, grad_norm, bad) as device tensors.
        """
        if self.state.window >= self.batcher.windows_per_epoch:
            self.state.epoch += 1
            self.state.window = 0
            self.carried = None
        config = self.config
        stream_group, groups = self.batcher.group(self.state.window), self.batcher.groups
        start = reset_rows(
            group_rows(self.carried, stream_group, groups),
            config.seed,
            self.state.step,
            config.state_reset,
            config.batch_size,
            self.rows,
        )
        x, y = self.batcher.window(self.state.window, pin=self.device.type == "cuda", epoch=self.state.epoch)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.dtype):
            logits, carried = self.net(x, start)  # [rows, T, V]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or float("inf"))
        bad = ~torch.isfinite(grad_norm)
        if not self.world.distributed:  # (a rank's own loss could differ; its gradients cannot)
            bad |= ~torch.isfinite(loss)
        self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.state.step)
        self.carried = put_group_rows(self.carried, keep_finite_state(bad, carried, start), stream_group, groups)
        self.bad_run = (self.bad_run + 1) * bad
        self.skipped += bad
        self.state.step += 1
        self.state.window += 1
        return loss.detach(), grad_norm.detach(), bad

    def check_health(self) -> bool:
        """Report skipped NaN/inf steps; after `max_bad_steps` in a row roll back (True) or give up."""
        skipped, self.bad_steps = int(self.skipped), int(self.bad_run)
        if not skipped:
            return False
        self.skipped.zero_()
        step = self.state.step
        where = f"step {step}" if skipped == 1 else f"{skipped} steps up to step {step}"
        self.observer.on_warning(f"{where}: loss or gradients are NaN/inf; update skipped")
        if self.bad_steps < self.options.max_bad_steps:
            return False
        self.roll_back()
        self.bad_run.zero_()
        return True

    def decide(self, now: float, t0: float, marks: Marks) -> Decision:
        """What is due after this step, agreed by all ranks (one collective)."""
        state = self.state
        wanted = self.team.agree(
            [
                STOP_REASONS.index(self.budget_reason(now - t0 + self.reserve_s) or ""),
                now - marks.log >= LOG_EVERY_S,
                self.has_val and self.config.eval_every.due(state.step, state.last_eval_step, now, marks.eval),
                self.config.save_every.due(state.step, marks.save_step, now, marks.save),
                self.interrupted or 0,
            ]
        )
        if wanted[4]:
            self.interrupted = wanted[4]  # another rank's Ctrl-C stops this one too
        return Decision(STOP_REASONS[wanted[0]] or None, bool(wanted[1]), bool(wanted[2]), bool(wanted[3]), wanted[4])

    def log(self, lr: float, grad_norm: torch.Tensor, now: float, t0: float, marks: Marks) -> None:
        """A train row: mean loss since the last row (summed over ranks), throughput, lr, grad norm."""
        total_loss, count = (float(v) for v in self.team.sum(torch.stack([self.loss_sum, self.loss_count])))
        train_loss = total_loss / count if count else math.nan
        state = self.state
        row = {
            "event": "train",
            "step": state.step,
            "epoch": round(self.epochs_done(), 4),
            "elapsed_s": round(state.elapsed_s, 3),
            "chars_per_s": round(
                (state.step - marks.log_step) * self.batcher.chars_per_window / max(now - marks.log, 1e-9), 1
            ),
            "lr": lr,
            "train_loss": json_number(train_loss),
            "train_bpc": json_number(train_loss / math.log(2)),
            "grad_norm": json_number(float(grad_norm.item())),
            # of the whole run, the final validation included (the lr schedule's `progress`
            # counts that validation as spent already, to reach zero at the last step)
            "progress": round(self.config.progress(state.step, now - t0, self.epochs_done()), 4),
        }
        self.log_row(row)
        self.observer.on_log(row)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        marks.log, marks.log_step = now, state.step

    def validate(self) -> float:
        """Validation loss; under torchrun each rank scores its share and the sums are all-reduced."""
        shard = (self.world.rank, self.world.size)
        start = time.perf_counter()
        with self.ema.swapped_in(self.model) if self.ema is not None else nullcontext():  # --ema: the average's
            result = evaluate_ids(
                self.model,
                self.val_ids,
                self.device,
                self.dtype,
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
            "epoch": round(self.epochs_done(), 4),
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
                self.try_save(BEST)
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
            self.epochs_done() >= 1
            and state.evals_without_improvement >= TURNED_CHECKS
            and best is not None
            and not val_loss <= best + TURNED_MARGIN  # NaN counts as turned
        )

    def stop_note(self, stop: str) -> str:
        """Why a run that stopped itself did, and how to go on."""
        state, planned = self.state, self.planned_epochs()
        if stop == "epochs" and planned is not None:
            return (
                f"after the plan's {planned:g} passes over the text (more would overfit it); to train on: "
                f"charrnn train --resume {self.run_dir} --epochs N"
            )
        if stop == "overfitting" and state.best_val_loss is not None:
            return (
                f"validation did not improve for {state.evals_without_improvement} checks and rose above its best "
                f"({state.best_val_loss:.4f} at step {state.best_step}), which best.safetensors keeps; "
                "--patience N sets another rule"
            )
        return ""

    def resume_notes(self, spent: str | None) -> list[str]:
        """What a resumed run that had stopped (or stopped itself) will do now."""
        if not self.resumed_from:
            return []
        planned = self.planned_epochs()
        if spent == "epochs" and planned is not None:
            return [
                f"this run stopped itself after the plan's {planned:g} passes over its text (more would overfit "
                f"it); to train on, give --epochs N: the learning rate rises again to (1 - {planned:g}/N) of its "
                "peak and decays to zero at N passes"
            ]
        if spent:
            return [f"the run's {spent} budget is already spent; give a larger one to go on"]
        history = self.state.history
        last_val = history[-1].get("val_loss") if history else None
        if self.config.patience is None and self.validation_turned(math.inf if last_val is None else last_val):
            return [
                "this run stopped itself when its validation turned; it goes on, and stops again at the next "
                "validation unless that one improves (--patience N sets another rule)"
            ]
        return []

    def log_row(self, row: dict[str, Any]) -> None:
        """A metrics.jsonl row; a failed write is warned about (once in a row) and training goes on."""
        failure = self.store.append_metrics(row)
        if failure and not self.metrics_failing:
            self.observer.on_warning(f"{failure}; training goes on")
        self.metrics_failing = failure is not None

    def request_stop(self, signum: int) -> None:
        self.interrupted = signum

    def epochs_done(self) -> float:
        return self.state.epoch + self.state.window / self.batcher.windows_per_epoch

    def budget_reason(self, elapsed: float) -> str | None:
        config, state = self.config, self.state
        if config.steps is not None and state.step >= config.steps:
            return "steps"
        if config.time_s is not None and elapsed >= config.time_s:
            return "time"
        if config.epochs is not None and self.epochs_done() >= config.epochs:
            return "epochs"
        return None

    def finish(self, stop: str, t0: float) -> TrainResult:
        """The final validation and saves; `Interrupted` after a signal, once `last` is written."""
        state = self.state
        interrupted = self.interrupted is not None and stop == signal_name(self.interrupted)
        if self.has_val and state.last_eval_step != state.step and not interrupted:
            self.run_validation(t0)
        if not self.has_val:
            self.observer.on_warning("no validation text (--val-frac 0 or a tiny corpus): best = last")
        last_path = self.final_save(LAST)
        best_path = self.run_dir / BEST
        if not self.team.share(best_path.exists()):
            self.final_save(BEST)
        result = TrainResult(
            run_dir=self.run_dir,
            best_path=best_path,
            last_path=last_path,
            best_val_loss=state.best_val_loss,
            steps=state.step,
            epochs=self.epochs_done(),
            elapsed_s=time.perf_counter() - t0,
            chars_per_s=state.step * self.batcher.chars_per_window / max(state.elapsed_s, 1e-9),
            stop_reason=stop,
            stop_note=self.stop_note(stop),
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
