"""The resolved schedule of a run (`TrainConfig`): flags where given, the plan's choices elsewhere.

TrainOptions (what was asked) --plan--> ModelConfig + TrainConfig (what runs; stored in checkpoints)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from charrnn.choices import Decay
from charrnn.data.corpus import Corpus
from charrnn.device import dtype_name
from charrnn.durations import Interval
from charrnn.errors import ConfigError
from charrnn.model import ModelConfig, count_parameters
from charrnn.training.distributed import World
from charrnn.training.option_spec import parse_declared
from charrnn.training.options import PREDATES, SCHEDULE_KEYS, SPECS, TrainOptions, flag, parse_value, value_text
from charrnn.training.plan import Fixed, Plan, budget_seconds, make_plan
from charrnn.training.schedule_options import ScheduleOptions

MIN_LR_FRACTION = 0.0  # all the way down: cosine to 0 gave 1.486 vs 1.489 for lr/10 (same test)


# The schedule's own fields a run recorded before they existed take the value that reproduces that
# run (the options' such values are their declarations' `predates`).
DERIVED_PREDATES: dict[str, Any] = {"alternate_ends": False}


def min_lr_for(lr: float) -> float:
    """Where the decay ends, for a new run and for a resumed one given a new --lr alike."""
    return lr * MIN_LR_FRACTION


@dataclass(frozen=True, kw_only=True)
class TrainConfig(ScheduleOptions):
    """The resolved schedule and budget of a run (stored in its checkpoints): the options it takes
    as given (inherited from `ScheduleOptions`), and below them what the plan resolves or derives."""

    batch_size: int
    seq_len: int
    stream_groups: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    time_s: float | None
    epochs: float | None
    eval_every: Interval
    dtype: str  # what ran: fp32, bf16 or fp16 (`--dtype auto` resolved)
    alternate_ends: bool  # odd epochs read the streams' ends (data.batches)

    def progress(self, step: int, elapsed: float, epochs_done: float) -> float:
        """Fraction of the budget used, by whichever budget runs out first."""
        parts = [0.0]
        if self.steps:
            parts.append(step / self.steps)
        if self.time_s:
            parts.append(elapsed / self.time_s)
        if self.epochs:
            parts.append(epochs_done / self.epochs)
        return min(1.0, max(parts))

    def lr_at(self, step: int, progress: float) -> float:
        """Linear warmup over `warmup_steps`, then `decay` from `lr` down to `min_lr` as progress -> 1."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        linear = self.decay == Decay.LINEAR
        left = 1.0 - progress if linear else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.lr - self.min_lr) * left

    def to_json(self) -> dict[str, Any]:
        return {f.name: value_text(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_json`; ConfigError on a malformed record (each declared value is checked
        by its option's declaration, as the flag that sets it would be)."""
        names = {f.name for f in fields(cls)}
        data = {**DERIVED_PREDATES, **{SCHEDULE_KEYS[name]: value for name, value in PREDATES.items()}, **data}
        if set(data) != names:
            raise ConfigError(f"the schedule's fields differ: {sorted(set(data) ^ names)}")
        values = dict(data)
        for name, key in SCHEDULE_KEYS.items():
            if values[key] is not None:
                values[key] = parse_value(name, values[key])
        config = cls(**values)
        check_schedule(config)
        return config

    def adjusted(self, changes: dict[str, Any]) -> TrainConfig:
        """This schedule with the options a resume may change applied (the rest stays)."""
        updates = {SCHEDULE_KEYS[name]: value for name, value in changes.items() if name in SCHEDULE_KEYS}
        if "lr" in changes:
            updates["min_lr"] = min_lr_for(changes["lr"])
        config = replace(self, **updates)
        check_schedule(config)
        return config


def fixed_values(options: TrainOptions) -> Fixed:
    """What the flags fix of what the plan would otherwise choose."""
    return Fixed(**{f.name: getattr(options, f.name) for f in fields(Fixed)})


def resolve_configs(
    options: TrainOptions,
    corpus: Corpus,
    train_chars: int,
    device: torch.device,
    dtype: torch.dtype,
    world: World | None = None,
    flops: float | None = None,
) -> tuple[ModelConfig, TrainConfig, Plan]:
    """The run's model and schedule: the options it takes as given, and the plan for the rest.

    `flops` is the measured training rate of the machine (all ranks together), if it was measured.
    """
    time_s = budget_seconds(options.time, options.steps, options.epochs)
    plan = make_plan(
        train_chars,
        corpus.vocab.size,
        device,
        dtype,
        time_s,
        options.steps,
        options.epochs,
        fixed_values(options),
        flops,
        fine_tune=options.init_from is not None,
        val_chars=min(options.val_max_chars, corpus.num_chars - train_chars),
        ranks=world.size if world else 1,
    )
    model_config = ModelConfig(
        vocab_size=corpus.vocab.size,
        cell=options.cell.value,
        num_layers=plan.num_layers,
        hidden_size=plan.hidden_size,
        embed_size=plan.embed_size,
        dropout=plan.dropout,
    )
    given = {f.name: getattr(options, f.name) for f in fields(ScheduleOptions)}
    train_config = TrainConfig(
        **given,
        batch_size=plan.batch_size,
        seq_len=plan.seq_len,
        stream_groups=plan.stream_groups,
        alternate_ends=True,
        lr=plan.lr,
        min_lr=min_lr_for(plan.lr),
        warmup_steps=plan.warmup_steps,
        weight_decay=plan.weight_decay,
        time_s=time_s,
        epochs=options.epochs or plan.epochs_cap,
        eval_every=plan.eval_every,
        dtype=dtype_name(dtype),
    )
    check_schedule(train_config)
    return model_config, train_config, plan


def check_schedule(config: TrainConfig) -> None:
    """Refuse a schedule whose values are each absurd (a stored one may come from a forged file):
    each option's value by its declaration (named by the flag that sets it), then what the plan
    derives. Comparisons are written so that NaN fails them too."""
    optional = {f.name for f in fields(config) if "None" in str(f.type)}
    for name, key in SCHEDULE_KEYS.items():
        value = getattr(config, key)
        if value is None and key in optional:
            continue
        if value is None or isinstance(value, bool):  # (no option takes true/false)
            raise ConfigError(f"{flag(name)}: not a valid value ({ascii(value)[:40]})")
        parse_declared(SPECS[name], flag(name), value)
    if not isinstance(config.alternate_ends, bool):
        raise ConfigError(f"the schedule's alternate_ends must be true or false, got {config.alternate_ends!r}")
    if not (isinstance(config.min_lr, (int, float)) and 0 <= config.min_lr <= config.lr):
        raise ConfigError(f"the schedule's min_lr must be from 0 to the peak lr, got {config.min_lr!r}")
    if config.dtype not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"the schedule's dtype must be fp32, bf16 or fp16, got {str(config.dtype)[:20]!r}")


def check_fits(config: ModelConfig) -> None:
    """Refuse a model whose weights, gradients and AdamW moments exceed this machine's memory."""
    need = count_parameters(config) * 4 * 4
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise ConfigError(
            f"the model has {count_parameters(config):,} parameters and needs about {need / 2**30:,.0f} GiB "
            f"to train; this machine has {have / 2**30:,.0f} GiB; use a smaller --hidden, --layers or --embed"
        )
