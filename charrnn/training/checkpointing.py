"""Saving and restoring a run during training: best/last, failed writes, rollback after NaN/inf.

Writing itself is the run store's (training.run_store); `Checkpoints` decides what to save,
gathers it from every rank, and what to do when a write fails. A checkpoint holds what the
`Stepper` trains (weights, optimizer, weight average, carried state), the run's counters, the
RNG, and the run's description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from charrnn.errors import CheckpointError, TrainingError
from charrnn.store.checkpoint import Checkpoint, all_finite, load_checkpoint, load_weights
from charrnn.store.meta import RunState
from charrnn.store.runs import LAST
from charrnn.training.carried import gather_state, slice_state
from charrnn.training.config import TrainConfig
from charrnn.training.distributed import Team
from charrnn.training.observer import TrainObserver
from charrnn.training.optimizer import optimizer_state
from charrnn.training.run_store import RunStore, Snapshot, carried_state, run_state
from charrnn.training.step import Stepper
from charrnn.vocab import Vocab

MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.5


class NonFiniteWeights(TrainingError):
    """Raised by `Checkpoints.save` instead of writing NaN/inf weights."""


class Checkpoints:
    """Writes a run's best and last checkpoints, and puts a run back as one of them holds it."""

    def __init__(
        self,
        stepper: Stepper,
        state: RunState,
        store: RunStore,
        team: Team,
        config: TrainConfig,
        vocab: Vocab,
        record: Callable[[], dict[str, Any]],
        observer: TrainObserver,
        max_save_failures: int,
    ) -> None:
        self.stepper = stepper  # what is trained: saved, and restored in place
        self.state = state  # the run's counters: saved, and restored in place
        self.store = store
        self.run_dir = store.run_dir
        self.team = team
        self.world, self.device = team.world, team.device
        self.config = config
        self.vocab = vocab
        self.record = record  # the run's description, as every checkpoint stores it
        self.observer = observer
        self.max_save_failures = max_save_failures
        self.save_failures = 0  # failed checkpoint writes in a row

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from `ckpt` exactly: weights, optimizer, counters, data position, state, RNG."""
        stepper = self.stepper
        load_weights(stepper.model, ckpt)
        if stepper.ema is not None:  # `model.*` is the average; the weights being trained are `raw.*`
            stepper.ema.load(ckpt.weights)
            raw = {name[len("raw.") :]: tensor for name, tensor in ckpt.extra.items() if name.startswith("raw.")}
            stepper.model.load_state_dict(raw, strict=True)
        try:
            stepper.optimizer.load_state_dict(optimizer_state(ckpt))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{ckpt.path}: optimizer state does not fit the model ({exc})") from None
        stepper.optimizer.param_groups[0]["weight_decay"] = self.config.weight_decay
        for group in stepper.optimizer.param_groups:  # checkpoints from before fused AdamW stored fused=None
            group["fused"], group["foreach"] = True, None
        stored = run_state(ckpt)
        for counter in fields(RunState):  # in place: every part of the trainer holds this one state
            setattr(self.state, counter.name, getattr(stored, counter.name))
        stepper.carried = slice_state(carried_state(ckpt, self.device), stepper.batcher.stream_rows)
        self.restore_rng(ckpt)

    def restore_rng(self, ckpt: Checkpoint) -> None:
        """This rank's RNG as saved; a run resumed by a different number of processes is re-seeded."""
        saved_world = ckpt.info.world_size
        per_rank = {"cpu": ckpt.extra.get("rng.torch.ranks"), "cuda": ckpt.extra.get("rng.cuda.ranks")}
        if saved_world != self.world.size:
            torch.manual_seed(self.config.seed + self.world.rank + self.state.step)
            if self.world.is_main:
                self.observer.on_warning(
                    f"this run was trained by {saved_world} process(es) and goes on with {self.world.size}: its "
                    f"{self.config.batch_size * self.config.stream_groups} streams are re-sharded and dropout "
                    "randomness differs from an uninterrupted run"
                )
            return
        cpu, cuda = ckpt.extra.get("rng.torch"), ckpt.extra.get("rng.cuda")
        if per_rank["cpu"] is not None:
            cpu = per_rank["cpu"][self.world.rank].clone()
        if per_rank["cuda"] is not None:
            cuda = per_rank["cuda"][self.world.rank].clone()
        if cpu is not None:
            torch.set_rng_state(cpu)
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)

    def save(self, name: str) -> Path:
        """Write best or last: weights, optimizer, counters, carried state, RNG, history.

        Under torchrun every rank takes part (the carried state and RNG of all ranks are
        gathered), and rank 0 alone writes.
        """
        path = self.run_dir / name
        stepper = self.stepper
        carried = gather_state(self.team, stepper.carried)
        rng = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.world.distributed:
            rng.update({f"{key}.ranks": self.team.gather_cpu(value) for key, value in list(rng.items())})
        if not self.world.is_main:
            return path
        raw = stepper.model.state_dict()
        weights = raw if stepper.ema is None else stepper.ema.state_dict()  # what every command will read
        if not all_finite(weights) or not all_finite(raw):
            raise NonFiniteWeights(f"weights contain NaN/inf; {path} was not written")
        beside = None if stepper.ema is None else raw
        snapshot = Snapshot(weights, stepper.optimizer, carried, rng, self.state, self.record(), beside)
        return self.store.save(name, stepper.model.config, self.vocab, snapshot)

    def save_everywhere(self, name: str) -> tuple[str, str] | None:
        """Save, then tell every rank how rank 0's write went: None, or (kind, reason) of the failure.

        Only rank 0 writes, so only it can fail; sharing the outcome lets all ranks warn, go on or
        stop together, instead of leaving the others waiting in a collective for a rank that left.
        """
        failure: tuple[str, str] | None = None
        try:
            self.save(name)
        except NonFiniteWeights as exc:
            failure = ("nonfinite", str(exc))
        except OSError as exc:
            failure = ("oserror", exc.strerror or str(exc))
        return self.team.share(failure)

    def try_save(self, name: str) -> None:
        """Save during training; a failed write keeps the previous file and training goes on, a while."""
        path = self.run_dir / name
        failure = self.save_everywhere(name)
        if failure is None:
            self.save_failures = 0
            return
        kind, reason = failure
        if kind == "nonfinite":
            self.observer.on_warning(f"step {self.state.step}: {reason}")
            return
        self.save_failures += 1
        if self.save_failures >= self.max_save_failures:
            raise TrainingError(
                f"could not write {path} {self.save_failures} times in a row ({reason}); stopped at step "
                f"{self.state.step}; free space or fix permissions, then: charrnn train --resume {self.run_dir}"
            )
        self.observer.on_warning(f"could not write {path} ({reason}); the previous file is kept, training goes on")

    def final_save(self, name: str) -> Path:
        """The save that ends a run must succeed, or the run fails (on every rank) saying what survives."""
        failure = self.save_everywhere(name)
        if failure is not None:
            raise TrainingError(
                f"could not write {self.run_dir / name} at step {self.state.step} ({failure[1]}); "
                f"the last good checkpoint in {self.run_dir} is kept"
            )
        return self.run_dir / name

    def roll_back(self, bad_steps: int) -> None:
        """After `bad_steps` (`max_bad_steps`) NaN/inf steps in a row: reload last with a lower lr, or give up."""
        last, state = self.run_dir / LAST, self.state
        lr_now = self.config.lr * state.lr_scale
        if state.rollbacks >= MAX_ROLLBACKS or not last.is_file():
            why = f"after {state.rollbacks} rollbacks" if last.is_file() else "with no checkpoint to roll back to"
            raise TrainingError(
                f"training diverged: loss or gradients were NaN/inf for {bad_steps} steps in a row at step "
                f"{state.step} {why}; start again with a lower --lr (peak now {lr_now:.3g}) or --grad-clip"
            )
        scale, rollbacks = state.lr_scale * ROLLBACK_LR_FACTOR, state.rollbacks + 1
        elapsed = state.elapsed_s
        self.restore(load_checkpoint(last))
        state.lr_scale, state.rollbacks, state.elapsed_s = scale, rollbacks, elapsed
        self.store.truncate_metrics(state.step)
        self.observer.on_warning(
            f"{bad_steps} steps in a row had NaN/inf loss or gradients; rolled back to step "
            f"{state.step} ({last.name}) with the learning rate scaled by {scale:g}"
        )
