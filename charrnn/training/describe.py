"""What a run says about itself: config.json, the record in every checkpoint, the start banner,
and why it stopped (or, resumed, what it will do now).

Each is built from the run's opened parts (training.parts.RunParts) when it is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from charrnn.device import dtype_name
from charrnn.store.meta import RunState
from charrnn.training.parts import RunParts


def resolved(parts: RunParts) -> dict[str, Any]:
    """config.json: the options as given, and the model and schedule they resolved to."""
    return {
        "command": parts.options.command,
        "options": parts.options.to_json(),
        "model_config": parts.model_config.to_dict(),
        "train_config": parts.config.to_json(),
        "corpus": corpus_meta(parts),
        "device": str(parts.device),
        "threads": parts.threads,
        "world_size": parts.world.size,
        "speed": asdict(parts.speed),
    }


def record(parts: RunParts) -> dict[str, Any]:
    """The run's description as every checkpoint stores it (beside the counters and tensors)."""
    return {
        "world_size": parts.world.size,
        "options": {**parts.options.to_json(), "resume": None, "init_from": None},
        "train_config": parts.config.to_json(),
        "corpus": corpus_meta(parts),
        "command": parts.options.command,
    }


def corpus_meta(parts: RunParts) -> dict[str, Any]:
    """The text the run trains on: where it came from, its digest, and how it was split."""
    corpus, train_chars = parts.corpus, int(parts.train_ids.size)
    return {
        "sources": list(corpus.sources),
        "paths": [s if s == "-" else str(Path(s).resolve()) for s in corpus.sources],
        "digest": corpus.digest,
        "separator": corpus.separator,
        "skipped": [list(item) for item in corpus.skipped],
        "chars": corpus.num_chars,
        "train_chars": train_chars,
        "val_chars": corpus.num_chars - train_chars,
        "val_scored_chars": max(0, int(parts.val_ids.size) - 1),
    }


def banner(parts: RunParts, state: RunState) -> dict[str, Any]:
    """The facts `TrainObserver.on_start` shows, with a sampler of the model as it is at each call."""
    config = parts.config
    budget = []
    if config.time_s:
        budget.append(f"{config.time_s:g}s")
    if config.steps:
        budget.append(f"{config.steps} steps")
    if config.epochs:
        planned = " (planned: more would overfit)" if parts.planned_epochs() else ""
        budget.append(f"{config.epochs:g} epochs{planned}")
    return {
        "corpus": corpus_meta(parts),
        "vocab_size": parts.corpus.vocab.size,
        "model": parts.model_config.to_dict(),
        "parameters": parts.model.num_parameters(),
        "device": str(parts.device),
        "dtype": dtype_name(parts.dtype),
        "dtype_note": parts.dtype_note,
        "threads": parts.threads,
        "world_size": parts.world.size,
        "backend": parts.team.backend,
        "batch_size": config.batch_size,
        "seq_len": config.seq_len,
        "stream_groups": config.stream_groups,
        "lr": config.lr,
        "decay": config.decay,
        "budget": " or ".join(budget),
        "eval_every": str(config.eval_every),
        "windows_per_epoch": parts.batcher.windows_per_epoch,
        "run_dir": str(parts.run_dir),
        "resumed_from": parts.resumed_from,
        "resumed_step": state.step if parts.resumed_from else None,
        "sample": partial(preview, parts),
        "speed": parts.speed.describe() if parts.speed.measured else None,
        "plan": "; ".join(parts.plan_why),
        "budget_steps": config.steps,
        "budget_s": config.time_s,
    }


def preview(parts: RunParts, length: int = 80, temperature: float = 0.8) -> str:
    """A short sample from the model as it is now, for progress displays (seeded: no RNG is disturbed)."""
    from charrnn.sampling.controls import RunSettings, SampleSettings
    from charrnn.sampling.generate import generate

    settings, run = SampleSettings(temperature), RunSettings(length=length, seed=0)
    try:
        return "".join(generate(parts.model, parts.corpus.vocab, "", settings, run, parts.device))
    finally:
        parts.model.train()


def stop_note(parts: RunParts, state: RunState, stop: str) -> str:
    """Why a run that stopped itself did, and how to go on."""
    planned = parts.planned_epochs()
    if stop == "epochs" and planned is not None:
        return (
            f"after the plan's {planned:g} passes over the text (more would overfit it); to train on: "
            f"charrnn train --resume {parts.run_dir} --epochs N"
        )
    if stop == "overfitting" and state.best_val_loss is not None:
        return (
            f"validation did not improve for {state.evals_without_improvement} checks and rose above its best "
            f"({state.best_val_loss:.4f} at step {state.best_step}), which best.safetensors keeps; "
            "--patience N sets another rule"
        )
    return ""


def resume_notes(parts: RunParts, state: RunState, spent: str | None, turned: Callable[[float], bool]) -> list[str]:
    """What a resumed run that had stopped (or stopped itself) will do now; `spent` is the budget
    already spent, `turned` the stopping rule (training.validation) asked of a validation loss."""
    if not parts.resumed_from:
        return []
    planned = parts.planned_epochs()
    if spent == "epochs" and planned is not None:
        return [
            f"this run stopped itself after the plan's {planned:g} passes over its text (more would overfit "
            f"it); to train on, give --epochs N: the learning rate rises again to (1 - {planned:g}/N) of its "
            "peak and decays to zero at N passes"
        ]
    if spent:
        return [f"the run's {spent} budget is already spent; give a larger one to go on"]
    history = state.history
    last_val = history[-1].get("val_loss") if history else None
    if parts.config.patience is None and turned(math.inf if last_val is None else last_val):
        return [
            "this run stopped itself when its validation turned; it goes on, and stops again at the next "
            "validation unless that one improves (--patience N sets another rule)"
        ]
    return []
