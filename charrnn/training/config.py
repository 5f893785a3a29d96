"""The resolved schedule of a run (`TrainConfig`): flags where given, the plan's choices elsewhere.

TrainOptions (what was asked) --plan--> ModelConfig + TrainConfig (what runs; stored in checkpoints)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from charrnn.choices import Choice, Decay
from charrnn.data.corpus import Corpus
from charrnn.device import dtype_name
from charrnn.durations import Interval
from charrnn.errors import ConfigError
from charrnn.model import ModelConfig, count_parameters
from charrnn.training.distributed import World
from charrnn.training.options import TrainOptions, flag
from charrnn.training.plan import (
    DEFAULT_TIME_S,
    Fixed,
    assumed_flops,
    make_plan,
    stream_groups_for,
    validation_seconds,
)

WARMUP_STEPS = 20  # 20 beat 100 on Tiny Shakespeare at equal steps (1.489 vs 1.504 after 750)
MIN_LR_FRACTION = 0.0  # all the way down: cosine to 0 gave 1.486 vs 1.489 for lr/10 (same test)
VAL_COST_RATIO = 20  # periodic validations at least this many validation-times apart (<= 5% of the time)


# Fields a schedule recorded before they existed takes with the value that reproduces that run.
ADDED_LATER: dict[str, Any] = {
    "state_reset": 0.0,
    "decay": "cosine",
    "stream_groups": 1,
    "alternate_ends": False,
    "ema": 0.0,
}


def min_lr_for(lr: float) -> float:
    """Where the decay ends, for a new run and for a resumed one given a new --lr alike."""
    return lr * MIN_LR_FRACTION


@dataclass(frozen=True)
class TrainConfig:
    """The resolved schedule and budget of a run (stored in its checkpoints)."""

    batch_size: int
    seq_len: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    val_frac: float
    val_max_chars: int
    time_s: float | None
    steps: int | None
    epochs: float | None
    patience: int | None
    eval_every: Interval
    save_every: Interval
    seed: int
    dtype: str
    state_reset: float = 0.0  # added later: runs recorded before it never reset
    decay: str = "cosine"  # added later: runs recorded before it decayed by a cosine
    stream_groups: int = 1  # added later: runs recorded before it read one group of B streams
    alternate_ends: bool = False  # added later: odd epochs read the streams' ends (data.batches); before, never
    ema: float = 0.0  # added later: runs recorded before it kept no average of the weights

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
        data = asdict(self)
        data["eval_every"], data["save_every"] = self.eval_every.spec, self.save_every.spec
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_json`; TypeError/ValueError/ConfigError on a malformed record."""
        names = {f.name for f in fields(cls)}
        data = {**ADDED_LATER, **data}
        if set(data) != names:
            raise TypeError(f"fields {sorted(set(data) ^ names)}")
        values = dict(data)
        values["eval_every"] = Interval.parse(str(data["eval_every"]))
        values["save_every"] = Interval.parse(str(data["save_every"]))
        config = cls(**values)
        check_schedule(config)
        return config

    def adjusted(self, changes: dict[str, Any]) -> TrainConfig:
        """This schedule with the options a resume may change applied (the rest stays)."""
        updates: dict[str, Any] = {}
        if "lr" in changes:
            updates.update(lr=changes["lr"], min_lr=min_lr_for(changes["lr"]))
        if "time" in changes:
            updates["time_s"] = changes["time"]
        for key in (
            "weight_decay",
            "grad_clip",
            "state_reset",
            "decay",
            "warmup_steps",
            "steps",
            "epochs",
            "patience",
            "eval_every",
            "save_every",
        ):
            if key in changes:
                value = changes[key]
                updates[key] = value.value if isinstance(value, Choice) else value  # a schedule holds plain values
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
    train_config = TrainConfig(
        batch_size=batch_size,
        seq_len=plan.seq_len,
        stream_groups=options.stream_groups or stream_groups_for(train_chars, batch_size, plan.seq_len),
        alternate_ends=True,
        lr=lr,
        min_lr=min_lr_for(lr),
        warmup_steps=warmup,
        weight_decay=plan.weight_decay if options.weight_decay is None else options.weight_decay,
        grad_clip=options.grad_clip,
        state_reset=options.state_reset,
        ema=options.ema,
        decay=options.decay.value,
        val_frac=options.val_frac,
        val_max_chars=options.val_max_chars,
        time_s=time_s,
        steps=options.steps,
        epochs=epochs,
        patience=options.patience,
        eval_every=eval_every,
        save_every=options.save_every,
        seed=options.seed,
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
    """Refuse a schedule whose values are each absurd (a stored one may come from a forged file).

    Comparisons are written so that NaN fails them too; names are the flags that set each value.
    """
    for name in ("batch_size", "seq_len", "stream_groups", "warmup_steps", "val_max_chars", "seed"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{flag(name)} must be a whole number, got {value!r}")
    for name in ("batch_size", "seq_len", "stream_groups", "lr", "val_max_chars"):
        if not 0 < getattr(config, name) < math.inf:
            raise ConfigError(f"{flag(name)} must be a positive number, got {getattr(config, name)}")
    if not (0 <= config.grad_clip < math.inf and 0 <= config.weight_decay < math.inf):
        raise ConfigError("--grad-clip and --weight-decay must be finite and not negative")
    if not (isinstance(config.state_reset, (int, float)) and 0 <= config.state_reset <= 1):
        raise ConfigError(f"--state-reset must be a number from 0 to 1, got {config.state_reset!r}")
    if not (isinstance(config.ema, (int, float)) and 0 <= config.ema < 1):
        raise ConfigError(f"--ema must be a number from 0 to below 1, got {config.ema!r}")
    if not isinstance(config.alternate_ends, bool):
        raise ConfigError(f"the schedule's alternate_ends must be true or false, got {config.alternate_ends!r}")
    if config.decay not in tuple(Decay):
        raise ConfigError(f"--decay must be one of {Decay.listing()}, got {str(config.decay)[:20]!r}")
    if not (0 <= config.min_lr <= config.lr and config.warmup_steps >= 0 and 0 <= config.val_frac < 1):
        raise ConfigError("the schedule's min_lr, warmup_steps or val_frac is out of range")
    if config.dtype not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"the schedule's dtype must be fp32, bf16 or fp16, got {str(config.dtype)[:20]!r}")
    if config.steps is not None and config.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {config.steps}")
    if config.epochs is not None and not 0 < config.epochs < math.inf:
        raise ConfigError(f"--epochs must be a positive number, got {config.epochs}")
    if config.time_s is not None and not 0 < config.time_s < math.inf:
        raise ConfigError(f"--time must be a finite duration, got {config.time_s}")
    if not -(2**63) <= config.seed < 2**64:
        raise ConfigError(f"--seed must fit in 64 bits, got {config.seed}")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"--patience must be at least 1, got {config.patience}")


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
