"""Default sizes for a run: what model, batch and schedule a corpus and a time budget can afford.

Every value here is only a default; each has a `train` flag that overrides it. The rules come from
measurements on Tiny Shakespeare on a 2-core CPU (README, "Measured"): a 2x384 LSTM is the best
buy for a minute or two, 2x512 with dropout for ten minutes, and small corpora need small models
with dropout or they memorise the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from charrnn.durations import Interval
from charrnn.model import ModelConfig, count_parameters

DEFAULT_TIME_S = 600.0
# Training FLOP/s (6 x params x chars/s) assumed where the run does not measure its machine (a
# `--steps` or `--epochs` budget, a resumed run): bf16 on an AVX-512 BF16 EPYC, fp32 on an
# AVX2-only EPYC, both with 2 cores. A time budget measures instead (`training.probe`).
CPU_TRAIN_FLOPS = {torch.bfloat16: 2.1e11, torch.float32: 9.0e10}
GPU_TRAIN_FLOPS = 2.0e13
# 2x512 beats 2x384 once it sees this many characters. On machine B 2x384 won at 80 s (1.489 vs
# 1.505), where 2x512 would see about 1M; on machine C 2x512 won at 80 s, three runs each (1.4256,
# 1.4307, 1.4300 against 1.4369, 1.4391, 1.4426), seeing 1.6-1.9M. Between the two is unmeasured.
CHARS_FOR_512 = 1.5e6
WEIGHT_DECAY = 0.01  # AdamW's, where the plan does not regularise harder (a rich plan, below)
WARMUP_STEPS = 20  # 20 beat 100 on Tiny Shakespeare at equal steps (1.489 vs 1.504 after 750)
VAL_COST_RATIO = 20  # periodic validations at least this many validation-times apart (<= 5% of the time)
PLANNED_VALIDATIONS = 8  # over a run the plan ends after a number of passes: enough to see a turn


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a run trains: the values the flags gave, and for the rest the plan's choices, each with
    the reason the banner prints (`why`)."""

    hidden_size: int
    num_layers: int
    embed_size: int
    dropout: float
    batch_size: int
    seq_len: int
    lr: float
    expected_epochs: float
    weight_decay: float
    epochs_cap: float | None  # passes the plan stops at, where the budget buys more than help
    stream_groups: int
    warmup_steps: int
    eval_every: Interval
    why: tuple[str, ...]


@dataclass(frozen=True)
class Fixed:
    """Values given by flags (None: plan it); the plan keeps them and fits the rest around them."""

    hidden_size: int | None = None
    num_layers: int | None = None
    embed_size: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    dropout: float | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    stream_groups: int | None = None
    eval_every: Interval | None = None


def assumed_flops(device: torch.device, dtype: torch.dtype) -> float:
    """The training rate used where none was measured."""
    if device.type == "cpu":
        return CPU_TRAIN_FLOPS.get(dtype, CPU_TRAIN_FLOPS[torch.float32])
    return GPU_TRAIN_FLOPS


def validation_seconds(config: ModelConfig, val_chars: int, flops: float) -> float:
    """Expected wall time of one validation pass: forward only, 2 FLOPs per parameter per char."""
    return 2 * count_parameters(config) * max(val_chars, 0) / flops


def chars_per_second(config: ModelConfig, flops: float) -> float:
    """Training characters per second of `config` at `flops` (6 FLOPs per parameter per char)."""
    return flops / (6 * count_parameters(config))


def hidden_for_corpus(train_chars: int) -> int:
    """The largest hidden size the corpus can feed without gross overfitting."""
    for limit, hidden in ((50_000, 128), (250_000, 256), (600_000, 384)):
        if train_chars < limit:
            return hidden
    return 512 if train_chars < 20_000_000 else 1024


def hidden_for_time(seconds: float, device: torch.device, vocab_size: int, flops: float) -> int:
    """The largest hidden size that sees enough text in the budget, at this machine's rate, to beat
    a smaller one."""
    if device.type != "cpu":
        return 1024
    wide = ModelConfig(vocab_size=vocab_size, hidden_size=512)
    return 512 if chars_per_second(wide, flops) * seconds >= CHARS_FOR_512 else 384


def probe_config(train_chars: int, vocab_size: int, cell: str, fixed: Fixed | None = None) -> ModelConfig:
    """The largest model the plan may choose for this corpus: the one to time the machine with."""
    fixed = fixed or Fixed()
    return ModelConfig(
        vocab_size=vocab_size,
        cell=cell,
        hidden_size=fixed.hidden_size or hidden_for_corpus(train_chars),
        num_layers=fixed.num_layers or 2,
        embed_size=fixed.embed_size or 64,
    )


# Peak AdamW lr, measured on Tiny Shakespeare at equal steps (benchmarks/RESULTS.md): 1e-2 for 384
# hidden units was the best of 2e-3..1.6e-2 over 750 steps, and 8.66e-3 for 512 (1e-2 scaled by
# 1/sqrt(width)) beat twice that over 1,225 steps (1.4367 vs 1.4722). A short run gains from a higher
# lr: with the output bias starting at the character frequencies (training.setup), 2e-2 beat 1e-2,
# 1.5e-2 and 3e-2 at 320 steps of 384 units on all 8 seeds (fp32); under bf16 1.5x and 2x both beat 1x
# there, but 1x won at 500 and 800 steps by 0.015-0.02, more than the seeds' spread ("The lr boost").
# So the boost is 2x up to `SHORT_RUN_STEPS`, falling linearly to 1x at `LONG_RUN_STEPS`; no lr goes
# above 2e-2, the highest measured to be good.
LR_AT_384, MAX_LR, MIN_LR = 1e-2, 2e-2, 2e-3
SHORT_RUN_STEPS, LONG_RUN_STEPS = 300, 500
# The rich plan (below) was measured on an H200 with the band as it stood then (1x by 1,200 steps):
# its 735 steps took 1.58x, and it keeps that boost until it is measured again.
RICH_LR_BOOST = 1.58


def lr_boost(expected_steps: float) -> float:
    """2x for a run of at most `SHORT_RUN_STEPS` steps, falling linearly to 1x at `LONG_RUN_STEPS`."""
    return 1 + min(1.0, max(0.0, (LONG_RUN_STEPS - expected_steps) / (LONG_RUN_STEPS - SHORT_RUN_STEPS)))


def lr_for_hidden(hidden: int, expected_steps: float = LONG_RUN_STEPS, boost: float | None = None) -> float:
    """Peak AdamW lr for `hidden` units: `LR_AT_384` scaled by 1/sqrt(width) (wider layers need
    gentler steps), times the short-run boost (or `boost` where given); within [MIN_LR, MAX_LR]."""
    boost = lr_boost(expected_steps) if boost is None else boost
    return round(min(MAX_LR, max(MIN_LR, boost * LR_AT_384 * math.sqrt(384 / hidden))), 5)


# On a GPU a bigger batch buys throughput (cuDNN's recurrent kernel is the limit at batch 128), but
# fewer updates: the plan takes 512 streams only where the budget still buys this many steps with
# them, halving down to 128 otherwise (a short run on a small text needs its updates).
GPU_BATCHES, MIN_GPU_STEPS = (512, 256, 128), 2000


def window_shape(
    train_chars: int, device: torch.device, fixed: Fixed | None = None, budget_chars: float | None = None
) -> tuple[int, int]:
    """(batch, seq_len): 32 x 64 on a CPU; on a GPU x 128, batch 512 to 128 by the steps
    `budget_chars` buys (128 where unknown); halved until the text fills them."""
    fixed = fixed or Fixed()
    seq_len = 64 if device.type == "cpu" else 128
    window = fixed.seq_len or seq_len
    if device.type == "cpu":
        batch = 32
    elif budget_chars is None:
        batch = GPU_BATCHES[-1]
    else:
        batch = next((b for b in GPU_BATCHES if budget_chars / (b * window) >= MIN_GPU_STEPS), GPU_BATCHES[-1])
    while batch > 1 and (train_chars - 1) // batch < seq_len:
        batch //= 2
    while seq_len > 8 and (train_chars - 1) // batch < seq_len:
        seq_len //= 2
    return fixed.batch_size or batch, fixed.seq_len or seq_len


# Groups of B streams read in turn (data.batches): at 320 equal steps of 2x384 on Tiny Shakespeare,
# 16 groups beat 1 (benchmarks/RESULTS.md, "Streams far apart"); 32 gave part of it back. Fewer where
# the text is short: each stream keeps at least `MIN_STREAM_WINDOWS` windows, or its carried state
# would rarely carry far.
STREAM_GROUPS, MIN_STREAM_WINDOWS = 16, 16


def stream_groups_for(train_chars: int, batch_size: int, seq_len: int) -> int:
    """How many groups of `batch_size` streams the training text is cut into."""
    fits = (train_chars - 1) // (batch_size * seq_len * MIN_STREAM_WINDOWS)
    return max(1, min(STREAM_GROUPS, fits))


# Where the budget buys far more passes than a model can use (a GPU on a corpus of a few MB), the
# plan trains a model twice as wide, regularised hard, for a fixed number of passes, and stops
# there instead of overfitting for the rest of the budget. On
# one H200 on Tiny Shakespeare (benchmarks/RESULTS.md, "GPU"): 2x1024 with dropout 0.5 and weight
# decay 0.01 peaked at 8 passes (1.4193) and rose after; 3x1024 and 2x1536 did no better by 12.
# Weight decay holds the turn off: 0.1 was still improving at 10 passes (1.4136), and at 12 passes
# 0.2 beat 0.1 in one run (1.4093 vs 1.4227), both still improving at the end. 16 passes at 0.1
# turned at 9 (1.4336): the passes stay at 12.
# Measured only where the corpus's own model is 2x512 (from 600,000 chars): a smaller text keeps its
# own model and budget, and the loop's stopping rule ends it once its validation turns.
RICH_EPOCHS, RICH_DROPOUT, RICH_WEIGHT_DECAY, RICH_MIN_CHARS = 12.0, 0.5, 0.2, 600_000
MAX_HIDDEN = 1024


def dropout_for_epochs(epochs: float) -> float:
    """Dropout for a model of the corpus's own size, by the passes it will make over the text."""
    return 0.25 if epochs > 3 else (0.1 if epochs > 2 else 0.0)


def budget_seconds(seconds: float | None, steps: int | None, epochs: float | None) -> float | None:
    """The run's time budget: the one given, or `DEFAULT_TIME_S` where no budget is given at all."""
    if seconds is None and steps is None and epochs is None:
        return DEFAULT_TIME_S
    return seconds


def make_plan(
    train_chars: int,
    vocab_size: int,
    device: torch.device,
    dtype: torch.dtype,
    seconds: float | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    fixed: Fixed | None = None,
    flops: float | None = None,
    fine_tune: bool = False,
    val_chars: int = 0,
    ranks: int = 1,
) -> Plan:
    """Everything a run trains with, for `train_chars` of text under a budget (the first one to run
    out counts): the values `fixed` by flags, and the plan's choices around them.

    `flops` is this machine's training rate (measured by `training.probe`); without it, the rate
    assumed for the device and dtype. Where a time budget buys at least `RICH_EPOCHS` passes of a
    model twice as wide as the corpus's own, the plan takes that model and stops at those passes
    (not for a `fine_tune`: its model and its weights come from the checkpoint it starts from).
    `val_chars` (validated per check) spaces the validations; a planned batch rounds up to split
    evenly over `ranks` processes.
    """
    fixed = fixed or Fixed()
    rate = flops or assumed_flops(device, dtype)
    seconds = budget_seconds(seconds, steps, epochs)
    layers, embed = fixed.num_layers or 2, fixed.embed_size or 64

    def model(hidden: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, hidden_size=hidden, num_layers=layers, embed_size=embed)

    def budget_chars(hidden: int, batch_chars: int) -> float:
        """Characters the first budget to run out allows a `hidden`-wide model to train on."""
        budgets = [] if seconds is None else [chars_per_second(model(hidden), rate) * seconds]
        if steps is not None:
            budgets.append(steps * batch_chars)
        if epochs is not None:
            budgets.append(epochs * train_chars)
        return min(budgets)

    own = hidden_for_corpus(train_chars)
    hidden = own if seconds is None else min(own, hidden_for_time(seconds, device, vocab_size, rate))
    width_why = f"{train_chars:,} chars feed {own} units" + (
        f"; the budget buys under {CHARS_FOR_512 / 1e6:.1f}M chars of 512" if hidden < own else ""
    )
    hidden = fixed.hidden_size or hidden
    wide = min(MAX_HIDDEN, 2 * own)
    batch, seq_len = window_shape(train_chars, device, fixed)  # a rich run's shape: it needs its updates
    # only a time budget is filled so (--steps and --epochs say how long to train), with a model the plan chooses
    chosen_here = steps is None and epochs is None and fixed.hidden_size is None and not fine_tune
    rich = (
        chosen_here
        and train_chars >= RICH_MIN_CHARS
        and budget_chars(wide, batch * seq_len) >= RICH_EPOCHS * train_chars
    )
    if rich:
        hidden = wide
        width_why = f"the budget buys {RICH_EPOCHS:g}+ passes of twice the corpus's own width"
    elif steps is None:
        batch, seq_len = window_shape(train_chars, device, fixed, budget_chars(hidden, 0))
    chars = RICH_EPOCHS * train_chars if rich else budget_chars(hidden, batch * seq_len)
    expected_epochs = chars / max(train_chars, 1)
    expected_steps = chars / (batch * seq_len)
    planned_dropout = RICH_DROPOUT if rich else dropout_for_epochs(expected_epochs)
    dropout = planned_dropout if fixed.dropout is None else fixed.dropout
    boost = RICH_LR_BOOST if rich else lr_boost(expected_steps)
    lr = fixed.lr or lr_for_hidden(hidden, expected_steps, boost)
    cap = RICH_EPOCHS if rich else None
    if fixed.eval_every is not None:
        eval_every = fixed.eval_every
    elif cap is not None:  # the passes end the run, well before the time does
        eval_every = Interval(steps=planned_eval_steps(expected_steps))
    else:
        val_s = validation_seconds(model(hidden), val_chars, rate)
        eval_every = Interval.parse(default_eval_every(seconds, steps, val_s))
    lr_why = f"{LR_AT_384:g} x sqrt(384/{hidden}) x {boost:.2f} for ~{expected_steps:,.0f} steps"
    why = (
        f"{layers}x{hidden}: " + ("--hidden" if fixed.hidden_size else width_why),
        f"lr {lr:g}: " + ("--lr" if fixed.lr else lr_why),
        f"dropout {dropout:g}: "
        + ("--dropout" if fixed.dropout is not None else f"~{expected_epochs:.2g} passes over the text"),
        *([f"stops after {cap:g} passes: more would overfit"] if cap else []),
    )
    planned_decay = RICH_WEIGHT_DECAY if rich else WEIGHT_DECAY
    batch = batch if fixed.batch_size else -(-batch // ranks) * ranks  # the same share for every rank
    return Plan(
        hidden_size=hidden,
        num_layers=layers,
        embed_size=embed,
        dropout=dropout,
        batch_size=batch,
        seq_len=seq_len,
        lr=lr,
        expected_epochs=expected_epochs,
        weight_decay=planned_decay if fixed.weight_decay is None else fixed.weight_decay,
        epochs_cap=cap,
        stream_groups=fixed.stream_groups or stream_groups_for(train_chars, batch, seq_len),
        warmup_steps=planned_warmup(steps) if fixed.warmup_steps is None else fixed.warmup_steps,
        eval_every=eval_every,
        why=why,
    )


def planned_warmup(steps: int | None) -> int:
    """`WARMUP_STEPS`, or a tenth of a step budget where that is less."""
    return min(WARMUP_STEPS, max(1, steps // 10)) if steps else WARMUP_STEPS


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


def planned_eval_steps(steps: float) -> int:
    """Validate this many steps apart over a run of `steps` that ends by the plan's passes."""
    return max(1, math.ceil(steps / PLANNED_VALIDATIONS))
