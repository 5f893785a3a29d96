"""The options a run's schedule takes as given, declared once (see training.options for the rest).

`TrainOptions` (what the user asked) and `TrainConfig` (what runs, stored in checkpoints) both
inherit these fields, so an option declared here is a flag, an API keyword, a field of the stored
schedule with its schema, and a resume rule, with no other edit: only the code that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.choices import Decay
from charrnn.durations import Interval
from charrnn.training.option_spec import BUDGET, CKPTS, OPTIM, SYSTEM, Kind, Record, Role, option

SEED_RANGE = (-(2**63), 2**64 - 1)


@dataclass(frozen=True, kw_only=True)
class ScheduleOptions:
    """The options a run's schedule (`TrainConfig`) takes as given: never planned, each recorded in
    the checkpoint's schedule under its own name. `TrainConfig` inherits these fields, so an option
    declared here reaches the schedule, its resume rule and its stored schema with no other edit."""

    grad_clip: float = option(
        1.0,
        "Clip the gradient norm to this (0: off).",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.FLOAT,
        minimum=0.0,
        record=Record.SCHEDULE,
    )
    state_reset: float = option(
        0.05,
        "Chance per window that a stream's carried state starts again from zero, so the model learns "
        "to start from anywhere (and its state cannot drift).",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.FLOAT,
        minimum=0.0,
        maximum=1.0,
        metavar="P",
        record=Record.SCHEDULE,
        predates=0.0,
    )
    ema: float = option(
        0.0,
        "Validate and save an exponential moving average of the weights with this decay per step "
        "(e.g. 0.999; 0: off); early steps weigh less: min(DECAY, (1+step)/(10+step)).",
        OPTIM,
        Role.IDENTITY,
        Kind.FLOAT,
        minimum=0.0,
        maximum=0.99999,
        metavar="DECAY",
        record=Record.SCHEDULE,
        predates=0.0,
    )
    decay: Decay = option(
        Decay.LINEAR,
        "How the learning rate falls after warmup, to zero at the end of the budget.",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.CHOICE,
        choices=Decay,
        record=Record.SCHEDULE,
        predates=Decay.COSINE,
    )
    val_frac: float = option(
        0.1,
        "Last fraction of the text held out for validation.",
        OPTIM,
        Role.IDENTITY,
        Kind.FLOAT,
        minimum=0.0,
        maximum=0.9,
        metavar="F",
        record=Record.SCHEDULE,
    )
    val_max_chars: int = option(
        131_072,
        "Validate on at most this many held-out chars.",
        OPTIM,
        Role.IDENTITY,
        Kind.INT,
        minimum=2,
        record=Record.SCHEDULE,
    )
    steps: int | None = option(
        None, "Stop after this many steps.", BUDGET, Role.ADJUSTABLE, Kind.INT, minimum=1, record=Record.SCHEDULE
    )
    patience: int | None = option(
        None,
        "Stop after N validations without improvement.",
        BUDGET,
        Role.ADJUSTABLE,
        Kind.INT,
        minimum=1,
        record=Record.SCHEDULE,
    )
    save_every: Interval = option(
        Interval(seconds=300.0),
        "Save last every N steps or every DURATION.",
        CKPTS,
        Role.ADJUSTABLE,
        Kind.INTERVAL,
        metavar="N|DURATION",
        record=Record.SCHEDULE,
    )
    seed: int = option(
        1337,
        "Random seed (weights, dropout).",
        SYSTEM,
        Role.IDENTITY,
        Kind.INT,
        minimum=SEED_RANGE[0],
        maximum=SEED_RANGE[1],
        record=Record.SCHEDULE,
    )
