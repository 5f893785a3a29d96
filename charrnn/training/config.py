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
from charrnn.training.plan import (
    DEFAULT_TIME_S,
    Fixed,
    assumed_flops,
    make_plan,
    stream_groups_for,
    validation_seconds,
)
from charrnn.training.schedule_options import ScheduleOptions

WARMUP_STEPS = 20  # 20 beat 100 on Tiny Shakespeare at equal steps (1.489 vs 1.504 after 750)
MIN_LR_FRACTION = 0.0  # all the way down: cosine to 0 gave 1.486 vs 1.489 for lr/10 (same test)
VAL_COST_RATIO = 20  # periodic validations at least this many validation-times apart (<= 5% of the time)


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


def time_budget(options: TrainOptions) -> float | None:
    """The run's time budget in seconds: --time, or the default where no budget is given."""
    if options.time is None and options.steps is None and options.epochs is None:
        return DEFAULT_TIME_S
    return options.time


def fixed_sizes(options: TrainOptions) -> Fixed:
    """The sizes the flags fix; the plan chooses the others."""
    return Fixed(
        hidden_size=options.hidden_size,
        num_layers=options.num_layers,
        embed_size=options.embed_size,
        batch_size=options.batch_size,
        seq_len=options.seq_len,
    )


def resolve_configs(
    options: TrainOptions,
    corpus: Corpus,
    train_chars: int,
    device: torch.device,
    dtype: torch.dtype,
    world: World | None = None,
    flops: float | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """Flags where given, planned defaults elsewhere (a planned batch rounds up to split over the ranks).

    `flops` is the measured training rate of the machine (all ranks together), if it was measured.
    """
    time_s = time_budget(options)
    flops = flops or assumed_flops(device, dtype)
    fixed = fixed_sizes(options)
    plan = make_plan(
        train_chars,
        corpus.vocab.size,
        device,
        dtype,
        time_s,
        options.steps,
        options.epochs,
        fixed,
        flops,
        fine_tune=options.init_from is not None,
    )
    model_config = ModelConfig(
        vocab_size=corpus.vocab.size,
        cell=options.cell.value,
        num_layers=plan.num_layers,
        hidden_size=plan.hidden_size,
        embed_size=plan.embed_size,
        dropout=plan.dropout if options.dropout is None else options.dropout,
    )
    lr = options.lr or plan.lr
    warmup = options.warmup_steps
    if warmup is None:
        warmup = min(WARMUP_STEPS, max(1, options.steps // 10)) if options.steps else WARMUP_STEPS
    val_chars = min(options.val_max_chars, corpus.num_chars - train_chars)
    val_s = validation_seconds(model_config, val_chars, flops)
    epochs = options.epochs or plan.epochs_cap
    if options.eval_every is not None:
        eval_every = options.eval_every
    elif plan.epochs_cap is not None:  # the passes end the run, well before the time does
        eval_every = Interval(
            steps=planned_eval_steps(plan.epochs_cap * train_chars / (plan.batch_size * plan.seq_len))
        )
    else:
        eval_every = Interval.parse(default_eval_every(time_s, options.steps, val_s))
    ranks = world.size if world else 1
    batch_size = options.batch_size or -(-plan.batch_size // ranks) * ranks
    given = {f.name: getattr(options, f.name) for f in fields(ScheduleOptions)}
    train_config = TrainConfig(
        **given,
        batch_size=batch_size,
        seq_len=plan.seq_len,
        stream_groups=options.stream_groups or stream_groups_for(train_chars, batch_size, plan.seq_len),
        alternate_ends=True,
        lr=lr,
        min_lr=min_lr_for(lr),
        warmup_steps=warmup,
        weight_decay=plan.weight_decay if options.weight_decay is None else options.weight_decay,
        time_s=time_s,
        epochs=epochs,
        eval_every=eval_every,
        dtype=dtype_name(dtype),
    )
    check_schedule(train_config)
    return model_config, train_config


def default_eval_every(time_s: float | None, steps: int | None, val_s: float = 0.0) -> str:
    """About four validations per run (the last at the end), never more often than every 15 s,
    and spaced so that periodic validation takes at most ~5% of a time budget.

    `val_s` is the expected cost of one validation: on two CPU cores a full pass over Tiny
    Shakespeare's validation text takes ~4 s, which every 20 s would cost an 80 s run 15% of its
    steps. Where even one periodic validation would cost more than that, only the final one runs.
    """
    if steps is not None and time_s is None:
        return str(max(1, steps // 4))
    budget = time_s or DEFAULT_TIME_S
    seconds = max(15.0, min(300.0, budget / 4), VAL_COST_RATIO * val_s)
    if time_s is not None:
        seconds = time_s / max(1, math.floor(time_s / seconds))  # equal parts, the last ending the run
    return f"{seconds:g}s"


PLANNED_VALIDATIONS = 8  # over a run the plan ends after a number of passes: enough to see a turn


def planned_eval_steps(steps: float) -> int:
    """Validate this many steps apart over a run of `steps` that ends by the plan's passes."""
    return max(1, math.ceil(steps / PLANNED_VALIDATIONS))


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
