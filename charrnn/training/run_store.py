"""A run's files: checkpoints (what goes into their metadata and back out), metrics.jsonl, config.json.

    run_dir/
      best.safetensors   last.safetensors    weights + optimizer + carried state + RNG + RunState
      metrics.jsonl                          one row per log line and validation (store.metrics)
      config.json                            the resolved options, model and schedule

The loop calls this module to persist and to restore; it never writes a file itself. Under
torchrun only rank 0 writes (`is_main`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from charrnn.errors import CheckpointError, TrainingError
from charrnn.files import atomic_write
from charrnn.model import ModelConfig, State
from charrnn.store.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.store.meta import RunState
from charrnn.store.metrics import metrics_row
from charrnn.store.runs import CONFIG, METRICS
from charrnn.training.carried import CARRIED_DTYPE
from charrnn.training.optimizer import optimizer_tensors
from charrnn.version import __version__
from charrnn.vocab import Vocab

HISTORY_LIMIT = 500  # validation rows kept in each checkpoint


def run_state(ckpt: Checkpoint) -> RunState:
    """The counters stored in `ckpt` (type-checked on load by store.meta.CheckpointMeta)."""
    counters = {f.name: getattr(ckpt.info, f.name) for f in fields(RunState)}
    return RunState(**{**counters, "history": list(ckpt.info.history)})


def json_number(value: float | None) -> float | None:
    """Finite floats as they are; NaN/inf become None so the JSON stays valid."""
    return value if value is not None and math.isfinite(value) else None


def state_tensors(state: State | None) -> dict[str, torch.Tensor]:
    """The carried state as a checkpoint stores it: as training keeps it, `CARRIED_DTYPE` (float32)."""
    if state is None:
        return {}
    if isinstance(state, tuple):
        return {"state.h": state[0], "state.c": state[1]}
    return {"state.h": state}


def carried_state(ckpt: Checkpoint, device: torch.device) -> State | None:
    """The stored carried state on `device` as float32, whatever floating dtype an older run wrote
    (GPU runs once stored the fp16 or bf16 their autocast returned)."""
    h, c = ckpt.extra.get("state.h"), ckpt.extra.get("state.c")
    if h is None:
        return None
    h = h.to(device, CARRIED_DTYPE)
    return (h, c.to(device, CARRIED_DTYPE)) if c is not None else h


def newer_best(path: Path, step: int) -> float | None:
    """Loss of a best checkpoint written after `step` (by a run killed before its next `last`)."""
    try:
        info = load_checkpoint(path).info
    except CheckpointError:
        return None
    return info.best_val_loss if info.step > step else None


@dataclass(frozen=True)
class Snapshot:
    """Everything one checkpoint holds besides the model config and vocab."""

    weights: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    carried: State | None
    rng: dict[str, torch.Tensor]
    state: RunState
    record: dict[str, Any]  # the run's description: options, train_config, corpus, command, world_size
    raw: dict[str, torch.Tensor] | None = None  # with --ema: the weights being trained (the model is their average)


class RunStore:
    """Reads and writes one run directory's files (writes on rank 0 only)."""

    def __init__(self, run_dir: Path, is_main: bool = True) -> None:
        self.run_dir = run_dir
        self.is_main = is_main

    def write_config(self, resolved: dict[str, Any]) -> None:
        """config.json, before the first step; a run that cannot write it cannot save either."""
        if self.is_main:
            text = json.dumps(resolved, indent=2, ensure_ascii=False) + "\n"
            try:
                atomic_write(self.run_dir / CONFIG, text.encode())
            except OSError as exc:
                raise TrainingError(
                    f"cannot write {self.run_dir / CONFIG} ({exc.strerror or exc}); free space or fix permissions"
                ) from None

    def append_metrics(self, row: dict[str, Any]) -> str | None:
        """Add a row to metrics.jsonl; the reason if that failed (training goes on: checkpoints matter more)."""
        if not self.is_main:
            return None
        try:
            with open(self.run_dir / METRICS, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(metrics_row(row), ensure_ascii=False, allow_nan=False) + "\n")
        except OSError as exc:
            return f"could not add to {self.run_dir / METRICS} ({exc.strerror or exc})"
        return None

    def truncate_metrics(self, step: int) -> None:
        """Drop log rows past `step` (written after the checkpoint we continue from) and torn lines."""
        path = self.run_dir / METRICS
        if not self.is_main or not path.is_file():
            return
        kept = []
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TrainingError(f"cannot read {path} ({exc.strerror or exc})") from None
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                kept.append(line + "\n")
        try:
            atomic_write(path, "".join(kept).encode("utf-8"))
        except OSError as exc:
            raise TrainingError(f"cannot write {path} ({exc.strerror or exc}); free space or fix permissions") from None

    def save(self, name: str, model_config: ModelConfig, vocab: Vocab, snapshot: Snapshot) -> Path:
        """Write checkpoint `name` atomically: the previous file stays whole until the new one is."""
        path = self.run_dir / name
        optim, groups = optimizer_tensors(snapshot.optimizer)
        extra = {**optim, **state_tensors(snapshot.carried), **snapshot.rng}
        if snapshot.raw is not None:
            extra.update({f"raw.{name}": tensor.detach().float().cpu() for name, tensor in snapshot.raw.items()})
        state = snapshot.state
        meta = {
            "kind": name.split(".")[0],
            "step": state.step,
            "epoch": state.epoch,
            "window": state.window,
            "elapsed_s": round(state.elapsed_s, 3),
            "val_reserve_s": state.val_reserve_s,
            "best_val_loss": state.best_val_loss,
            "best_step": state.best_step,
            "evals_without_improvement": state.evals_without_improvement,
            "last_eval_step": state.last_eval_step,
            "lr_scale": state.lr_scale,
            "rollbacks": state.rollbacks,
            **snapshot.record,
            "optimizer": {"param_groups": groups},
            "history": state.history[-HISTORY_LIMIT:],
            "versions": {"charrnn": __version__, "torch": torch.__version__, "python": sys.version.split()[0]},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        save_checkpoint(path, model_config, vocab, snapshot.weights, meta, extra)
        return path
