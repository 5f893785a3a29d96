"""One training step: truncated BPTT over the carried streams, AdamW, clipping, NaN/inf guard.

A `Stepper` holds what a step changes besides the run's counters: the model (and the module
that runs it, DDP's wrapper under torchrun), the optimizer, the weight average (--ema), the
hidden state carried from window to window, and the count of bad steps. The counters it moves
(step, window, epoch) are the run's `RunState`, shared with the rest of the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.data.batches import StreamBatcher
from charrnn.device import autocast
from charrnn.model import CharRNN, State
from charrnn.store.meta import RunState
from charrnn.training.carried import group_rows, keep_finite_state, put_group_rows, reset_rows
from charrnn.training.config import TrainConfig
from charrnn.training.ema import WeightAverage


class Stepper:
    """Trains the model one window at a time; keeps the carried state and the NaN/inf counts on the device."""

    def __init__(
        self,
        model: CharRNN,
        net: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        ema: WeightAverage | None,
        batcher: StreamBatcher,
        config: TrainConfig,
        rows: slice,
        device: torch.device,
        dtype: torch.dtype,
        distributed: bool,
        state: RunState,
    ) -> None:
        self.model = model
        self.net = net  # what a step calls: the model, or DDP around it
        self.optimizer = optimizer
        self.ema = ema
        self.batcher = batcher
        self.config = config
        self.rows = rows  # this rank's share of the batch's streams
        self.device = device
        self.dtype = dtype
        self.distributed = distributed
        self.state = state
        self.carried: State | None = None  # every stream's hidden state after its last window
        self.bad_run = torch.zeros((), dtype=torch.int64, device=device)  # on device: no sync per step
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)  # skipped updates since the check

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
        if not self.distributed:  # (a rank's own loss could differ; its gradients cannot)
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

    def take_bad_counts(self) -> tuple[int, int]:
        """(updates skipped since the last call, NaN/inf steps in a row now); one host sync."""
        skipped, in_a_row = int(self.skipped), int(self.bad_run)
        if skipped:
            self.skipped.zero_()
        return skipped, in_a_row

    def clear_bad_run(self) -> None:
        """Start counting bad steps in a row afresh (after a rollback)."""
        self.bad_run.zero_()

    def epochs_done(self) -> float:
        """Passes over the training text so far, the current one in part."""
        return self.state.epoch + self.state.window / self.batcher.windows_per_epoch
