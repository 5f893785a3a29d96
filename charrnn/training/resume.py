"""What `--resume` and `--init-from` may change, and what they must refuse.

A resumed run is the same run: its corpus, vocab, model shape and data layout are fixed by the
checkpoint, and changing any of them would make "continue exactly" a lie, so they are refused.
Budget, schedule and runtime knobs may change; each change is reported as a warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from charrnn.durations import parse_duration
from charrnn.errors import ConfigError
from charrnn.model import ModelConfig
from charrnn.store.checkpoint import Checkpoint

# Options that define the run: a different value is a different run.
IDENTITY = (
    "cell",
    "num_layers",
    "hidden_size",
    "embed_size",
    "dropout",
    "batch_size",
    "seq_len",
    "val_frac",
    "val_max_chars",
    "errors",
    "doc_separator",
    "seed",
)
# Options that may change on resume (each change is a warning).
ADJUSTABLE = (
    "lr",
    "weight_decay",
    "grad_clip",
    "warmup_steps",
    "time",
    "steps",
    "epochs",
    "patience",
    "eval_every",
    "save_every",
    "device",
    "dtype",
    "threads",
    "max_bad_steps",
    "max_save_failures",
)
# Where each model option lives in a ModelConfig, for checkpoints written without stored options.
MODEL_FIELDS = {
    "cell": "cell",
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "embed_size": "embed_size",
    "dropout": "dropout",
}


def flag(name: str) -> str:
    return "--" + {"num_layers": "layers", "hidden_size": "hidden", "embed_size": "embed"}.get(
        name, name.replace("_", "-")
    )


def given(options: Any) -> dict[str, Any]:
    """The options the user set: those that differ from the dataclass default."""
    out = {}
    for f in fields(options):
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(options, f.name)
        if value != default:
            out[f.name] = value
    return out


def stored_options(ckpt: Checkpoint) -> dict[str, Any]:
    """The options a run was started with, as far as the checkpoint records them."""
    stored = dict(ckpt.meta.get("options") or {})
    for option, attr in MODEL_FIELDS.items():
        stored[option] = getattr(ckpt.config, attr)
    train_config = ckpt.meta.get("train_config") or {}
    for key in ("batch_size", "seq_len", "val_frac", "val_max_chars", "seed"):
        if key in train_config:
            stored[key] = train_config[key]
    return stored


def resume_changes(options: Any, ckpt: Checkpoint) -> tuple[dict[str, Any], list[str]]:
    """(adjustable options the user changed, warnings); ConfigError when an identity option differs."""
    asked, stored = given(options), stored_options(ckpt)
    refused = [
        f"{flag(k)} {asked[k]} (the run has {stored[k]})"
        for k in IDENTITY
        if k in asked and k in stored and asked[k] != stored[k]
    ]
    if refused:
        raise ConfigError(
            f"--resume: {'; '.join(refused)}: corpus, vocab, model and data flags cannot change when resuming; "
            "start a new run, or fine-tune with --init-from"
        )
    changes = {k: asked[k] for k in ADJUSTABLE if k in asked and asked[k] != stored.get(k)}
    warnings = [
        f"resuming with {flag(k)} {v} (the run had {'the planned default' if stored.get(k) is None else stored[k]})"
        for k, v in changes.items()
    ]
    return changes, warnings


def adjust_train_config(config: Any, changes: dict[str, Any]) -> Any:
    """The stored TrainConfig with the allowed changes applied (the rest of the schedule stays)."""
    updates: dict[str, Any] = {}
    if "lr" in changes:
        updates.update(lr=changes["lr"], min_lr=changes["lr"] / 10)
    if "time" in changes:
        updates["time_s"] = parse_duration(changes["time"])
    for key in ("weight_decay", "grad_clip", "steps", "epochs", "patience", "eval_every", "save_every"):
        if key in changes:
            updates[key] = changes[key]
    if "warmup_steps" in changes:
        updates["warmup_steps"] = changes["warmup_steps"]
    return dataclasses.replace(config, **updates)


def init_from_config(options: Any, ckpt: Checkpoint) -> ModelConfig:
    """The fine-tuned model's config: the checkpoint's shape; only dropout may be set anew."""
    asked = given(options)
    refused = [
        f"{flag(k)} {asked[k]} (the checkpoint has {getattr(ckpt.config, MODEL_FIELDS[k])})"
        for k in ("cell", "num_layers", "hidden_size", "embed_size")
        if k in asked and asked[k] != getattr(ckpt.config, MODEL_FIELDS[k])
    ]
    if refused:
        raise ConfigError(f"--init-from: {'; '.join(refused)}: the model shape comes from the checkpoint")
    if "dropout" in asked:
        return dataclasses.replace(ckpt.config, dropout=asked["dropout"])
    return ckpt.config
