"""The training loop: truncated BPTT over carried streams, AdamW, clipping, warmup + cosine, budgets.

One straight loop (`Trainer.run`). Everything a run needs to continue exactly (weights,
optimizer moments, step, data position, carried hidden state, RNG) goes into its checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from charrnn.data.batches import StreamBatcher
from charrnn.data.corpus import ERROR_POLICIES, Corpus, load_corpus, skip_warnings, split_train_val
from charrnn.device import (
    autocast,
    available_cores,
    configure_threads,
    dtype_name,
    resolve_device,
    resolve_dtype,
)
from charrnn.durations import Interval, parse_duration
from charrnn.errors import CheckpointError, ConfigError, CorpusError, Interrupted, TrainingError
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN, ModelConfig, State, count_parameters
from charrnn.store.checkpoint import (
    Checkpoint,
    all_finite,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from charrnn.store.metrics import metrics_row
from charrnn.store.runs import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    clean_stale_temps,
    new_run_dir,
    resolve_checkpoint,
    resume_target,
)
from charrnn.training.distributed import Team, World, rank_device, world_from_env
from charrnn.training.plan import DEFAULT_TIME_S, Fixed, make_plan, validation_seconds
from charrnn.training.resume import adjust_train_config, init_from_config, resume_changes
from charrnn.version import __version__

HISTORY_LIMIT = 500
WARMUP_STEPS = 20  # 20 beat 100 on Tiny Shakespeare at equal steps (1.489 vs 1.504 after 750)
MIN_LR_FRACTION = 0.0  # cosine all the way down: 1.486 vs 1.489 for lr/10 (same test)
LOG_EVERY_S = 2.0
MAX_ROLLBACKS = 3
MAX_THREADS = 1024
ROLLBACK_LR_FACTOR = 0.5
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
STOP_REASONS = ("", "steps", "time", "epochs")  # budgets, in the order `budget_reason` checks them
FINAL_VAL_MAX_SHARE = 0.25  # of a time budget, at most, kept for the final validation
VAL_COST_RATIO = 20  # periodic validations at least this many validation-times apart (<= 5% of the time)
DUPLICATE_SIGNAL_S = 2.0  # torchrun forwards the terminal's Ctrl-C: the same signal twice at once


@dataclass(frozen=True)
class TrainOptions:
    """What the user asked for. None means "choose a good value for this corpus and budget"."""

    corpus: tuple[str, ...]
    out: str | None = None
    cell: str = "lstm"
    num_layers: int | None = None
    hidden_size: int | None = None
    embed_size: int | None = None
    dropout: float | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int | None = None
    val_frac: float = 0.1
    val_max_chars: int = 131_072
    time: str | None = None
    steps: int | None = None
    epochs: float | None = None
    patience: int | None = None
    eval_every: str | None = None
    save_every: str = "5m"
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    seed: int = 1337
    errors: str = "strict"
    doc_separator: str = "\n\n"  # between the documents of a multi-file corpus
    command: str = ""
    resume: str | None = None  # run directory or checkpoint to continue; "" = the newest run
    init_from: str | None = None  # checkpoint whose weights and vocab start a new run (fine-tuning)
    max_bad_steps: int = 5  # NaN/inf steps in a row before rolling back to the last checkpoint
    max_save_failures: int = 3  # failed checkpoint writes in a row before giving up


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
    eval_every: str
    save_every: str
    seed: int
    dtype: str

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
        """Linear warmup over `warmup_steps`, then cosine from `lr` down to `min_lr` as progress -> 1."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.lr - self.min_lr) * cosine


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_path: Path
    last_path: Path
    best_val_loss: float | None
    steps: int
    epochs: float
    elapsed_s: float
    chars_per_s: float
    stop_reason: str


@dataclass
class RunState:
    """Counters that change every step (the mutable part of a run)."""

    step: int = 0
    epoch: int = 0
    window: int = 0
    elapsed_s: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_eval_step: int = 0
    lr_scale: float = 1.0  # halved at each rollback after non-finite losses
    rollbacks: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class TrainObserver(Protocol):
    """Where the loop reports; the CLI renders these on stderr. All methods are optional no-ops.

    `on_start` gets the banner facts, and under "sample" a callable `(length) -> str` that samples
    from the model as it is at that moment (used to show a line of text at each validation).
    """

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_log(self, row: dict[str, Any]) -> None: ...
    def on_eval(self, row: dict[str, Any]) -> None: ...
    def on_warning(self, message: str) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


class SilentObserver:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_log(self, row: dict[str, Any]) -> None:
        pass

    def on_eval(self, row: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        pass

    def on_end(self, result: TrainResult) -> None:
        pass


def resolve_configs(
    options: TrainOptions,
    corpus: Corpus,
    train_chars: int,
    device: torch.device,
    dtype: torch.dtype,
    world: World | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """Flags where given, planned defaults elsewhere (a planned batch rounds up to split over the ranks)."""
    time_s = parse_duration(options.time) if options.time else None
    if time_s is None and options.steps is None and options.epochs is None:
        time_s = DEFAULT_TIME_S
    fixed = Fixed(
        hidden_size=options.hidden_size,
        num_layers=options.num_layers,
        embed_size=options.embed_size,
        batch_size=options.batch_size,
        seq_len=options.seq_len,
    )
    plan = make_plan(train_chars, corpus.vocab.size, device, dtype, time_s, options.steps, options.epochs, fixed)
    model_config = ModelConfig(
        vocab_size=corpus.vocab.size,
        cell=options.cell,
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
    val_s = validation_seconds(model_config, val_chars, device, dtype)
    eval_every = options.eval_every or default_eval_every(time_s, options.steps, val_s)
    Interval.parse(eval_every)
    Interval.parse(options.save_every)
    ranks = world.size if world else 1
    train_config = TrainConfig(
        batch_size=options.batch_size or -(-plan.batch_size // ranks) * ranks,
        seq_len=plan.seq_len,
        lr=lr,
        min_lr=lr * MIN_LR_FRACTION,
        warmup_steps=warmup,
        weight_decay=options.weight_decay,
        grad_clip=options.grad_clip,
        val_frac=options.val_frac,
        val_max_chars=options.val_max_chars,
        time_s=time_s,
        steps=options.steps,
        epochs=options.epochs,
        patience=options.patience,
        eval_every=eval_every,
        save_every=options.save_every,
        seed=options.seed,
        dtype=dtype_name(dtype),
    )
    check_positive(train_config)
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
    budget = time_s or 600.0
    seconds = max(15.0, min(300.0, budget / 4), VAL_COST_RATIO * val_s)
    if time_s is not None:
        seconds = time_s / max(1, math.floor(time_s / seconds))  # equal parts, the last ending the run
    return f"{seconds:g}s"


def check_positive(config: TrainConfig) -> None:
    """Reject values that are each absurd (comparisons written so that NaN fails them too)."""
    for name in ("batch_size", "seq_len", "lr", "val_max_chars"):
        if not 0 < getattr(config, name) < math.inf:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {getattr(config, name)}")
    if not (0 <= config.grad_clip < math.inf and 0 <= config.weight_decay < math.inf):
        raise ConfigError("--grad-clip and --weight-decay must be finite and not negative")
    if config.steps is not None and config.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {config.steps}")
    if config.epochs is not None and not 0 < config.epochs < math.inf:
        raise ConfigError(f"--epochs must be a positive number, got {config.epochs}")
    if config.time_s is not None and not 0 < config.time_s < math.inf:
        raise ConfigError(f"--time must be a finite duration, got {config.time_s}")
    for name in ("eval_every", "save_every"):
        seconds = Interval.parse(getattr(config, name)).seconds
        if seconds is not None and not seconds < math.inf:
            raise ConfigError(f"--{name.replace('_', '-')} must be finite, got {getattr(config, name)}")
    if not -(2**63) <= config.seed < 2**64:
        raise ConfigError(f"--seed must fit in 64 bits, got {config.seed}")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"--patience must be at least 1, got {config.patience}")


def check_options(options: TrainOptions) -> None:
    """Refuse absurd option values before any work (comparisons written so NaN fails them too)."""
    if not 0 <= options.val_frac < 1:
        raise ConfigError(f"--val-frac must be in [0, 1), got {options.val_frac}")
    if options.errors not in ERROR_POLICIES:
        raise ConfigError(f"--errors must be one of {', '.join(ERROR_POLICIES)}, got {options.errors!r}")
    if options.threads is not None and not 1 <= options.threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be between 1 and {MAX_THREADS}, got {options.threads}")
    if options.lr is not None and not 0 < options.lr < math.inf:
        raise ConfigError(f"--lr must be a positive number, got {options.lr}")
    if options.dropout is not None and not 0 <= options.dropout < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {options.dropout}")
    if options.epochs is not None and not 0 < options.epochs < math.inf:
        raise ConfigError(f"--epochs must be a positive number, got {options.epochs}")
    for name in ("time", "eval_every", "save_every"):
        text = getattr(options, name)
        try:
            seconds = None if text is None else Interval.parse(text).seconds if name != "time" else parse_duration(text)
        except ConfigError as exc:
            raise ConfigError(f"--{name.replace('_', '-')}: {exc}") from None
        if seconds is not None and not seconds < math.inf:
            raise ConfigError(f"--{name.replace('_', '-')} must be finite, got {text}")
    for name in ("num_layers", "hidden_size", "embed_size", "batch_size", "seq_len", "steps", "warmup_steps"):
        value = getattr(options, name)
        if value is not None and value < (0 if name == "warmup_steps" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


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


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases or the embedding table)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed.")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed.")]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel per step, and `found_inf` lets a NaN/inf step be skipped on the device
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state as named tensors plus JSON-able param groups (no pickle needed)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def state_tensors(state: State | None) -> dict[str, torch.Tensor]:
    if state is None:
        return {}
    if isinstance(state, tuple):
        return {"state.h": state[0], "state.c": state[1]}
    return {"state.h": state}


def slice_state(state: State | None, rows: slice) -> State | None:
    """This rank's rows of the whole batch's carried state ([layers, B, hidden] tensors)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (state[0][:, rows].contiguous(), state[1][:, rows].contiguous())
    return state[:, rows].contiguous()


def gather_state(team: Team, state: State | None) -> State | None:
    """Inverse of `slice_state`: every rank's rows, joined (the identity for one process)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (team.gather_rows(state[0], 1), team.gather_rows(state[1], 1))
    return team.gather_rows(state, 1)


def keep_finite_state(bad: torch.Tensor, new: State, old: State | None) -> State:
    """The new carried state, or the old one after a skipped step (chosen on the device, no sync)."""
    if isinstance(new, tuple):
        olds = old if isinstance(old, tuple) else (None, None)
        return tuple(keep_finite_state(bad, n, o) for n, o in zip(new, olds, strict=True))  # type: ignore[return-value]
    previous = old if isinstance(old, torch.Tensor) else torch.zeros_like(new)
    return torch.where(bad, previous.to(new.dtype), new.detach())


def optimizer_state(ckpt: Checkpoint) -> dict[str, Any]:
    """Inverse of `optimizer_tensors`: a state dict `Optimizer.load_state_dict` accepts."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in ckpt.extra.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    groups = (ckpt.meta.get("optimizer") or {}).get("param_groups")
    if not isinstance(groups, list):
        raise CheckpointError(f"{ckpt.path}: holds no optimizer state; it cannot be resumed (use --init-from)")
    return {"state": state, "param_groups": groups}


def carried_state(ckpt: Checkpoint, device: torch.device) -> State | None:
    h, c = ckpt.extra.get("state.h"), ckpt.extra.get("state.c")
    if h is None:
        return None
    return (h.to(device), c.to(device)) if c is not None else h.to(device)


class NonFiniteWeights(TrainingError):
    """Raised by `Trainer.save` instead of writing NaN/inf weights."""


def json_number(value: float | None) -> float | None:
    """Finite floats as they are; NaN/inf become None so the JSON stays valid."""
    return value if value is not None and math.isfinite(value) else None


class Trainer:
    """Owns one run: model, optimizer, data and run directory."""

    def __init__(self, options: TrainOptions, observer: TrainObserver | None = None) -> None:
        self.world = world_from_env()
        self.observer: TrainObserver = (observer or SilentObserver()) if self.world.is_main else SilentObserver()
        self.warnings: list[str] = []  # reported once the run starts
        if options.resume is not None and options.init_from is not None:
            raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
        resume: Checkpoint | None = None
        base: Checkpoint | None = None
        changes: dict[str, Any] = {}
        if options.resume is not None:
            run_dir, path = resume_target(options.resume)
            if options.out is not None and Path(options.out).resolve() != run_dir.resolve():
                raise ConfigError(f"--resume continues {run_dir} in place; drop --out {options.out}")
            resume = verify_checkpoint(path)
            changes, warnings = resume_changes(options, resume)
            self.warnings += warnings
            options = resumed_options(options, resume, run_dir, changes)
        if options.init_from is not None:
            base = verify_checkpoint(resolve_checkpoint(options.init_from))
        self.options = options
        self.resumed_from = resume.path if resume else None
        self.device = rank_device(resolve_device(options.device), self.world)
        self.dtype = resolve_dtype(options.dtype, self.device)
        try:
            check_options(options)
        except TypeError:  # only stored options can have wrong types: the file is broken
            raise CheckpointError(f"{self.resumed_from}: malformed stored options") from None
        self.team = Team(self.world, self.device)
        try:
            self.prepare(resume, base, changes)
        except BaseException:
            self.team.close(clean=False)
            raise

    def prepare(self, resume: Checkpoint | None, base: Checkpoint | None, changes: dict[str, Any]) -> None:
        """Corpus, configs, model, optimizer and run directory (after the process group is up)."""
        options, world = self.options, self.world
        threads = options.threads or (max(1, available_cores() // world.local_size) if world.distributed else None)
        self.threads = configure_threads(threads)
        self.corpus = self.load_corpus(base)
        self.warnings += skip_warnings(self.corpus.skipped)
        if resume is not None:
            check_same_corpus(resume, self.corpus)
        self.train_ids, val_ids = split_train_val(self.corpus.ids, options.val_frac)
        if resume is not None:
            self.model_config = resume.config
            stored = stored_train_config(resume)
            self.config = adjust_train_config(stored, changes)
            Interval.parse(self.config.eval_every)
            Interval.parse(self.config.save_every)
            check_positive(self.config)
        else:
            self.model_config, self.config = resolve_configs(
                options, self.corpus, int(self.train_ids.size), self.device, self.dtype, world
            )
            if base is not None:
                self.model_config = init_from_config(options, base)
        # Validation scores the first `val_max_chars` of the held-out text: all of it for small
        # corpora, a fixed sample for big ones, so validating never stalls training for long.
        self.val_ids = val_ids[: self.config.val_max_chars + 1]
        self.rows = world.rows(self.config.batch_size)
        self.batcher = StreamBatcher(self.train_ids, self.config.batch_size, self.config.seq_len, self.rows)
        self.has_val = self.val_ids.size >= 2
        self.reserve_s = self.final_validation_reserve(
            validation_seconds(self.model_config, int(self.val_ids.size), self.device, self.dtype) / world.size
        )
        if resume is not None:
            self.run_dir = Path(options.out or "")
        else:  # rank 0 picks the (new, unique) directory; the others learn its name, or its error
            picked: tuple[str, str] | None = None
            if world.is_main:
                try:
                    picked = (str(new_run_dir(options.out, self.corpus.sources)), "")
                except ConfigError as exc:
                    picked = ("", str(exc))
            name, error = self.team.share(picked)
            if error:  # every rank stops with it: none is left waiting in a collective
                raise ConfigError(error)
            self.run_dir = Path(name)
        if world.is_main:
            for stale in clean_stale_temps(self.run_dir):
                self.warnings.append(f"removed {stale.name}, left by an interrupted save")
        torch.manual_seed(self.config.seed)
        check_fits(self.model_config)
        self.model = CharRNN(self.model_config).to(self.device)
        if world.distributed:  # same initial weights everywhere, then each rank its own dropout masks
            torch.manual_seed(self.config.seed + world.rank)
        self.net = self.wrap(self.model)
        self.optimizer = make_optimizer(self.model, self.config)
        self.state = RunState()
        self.carried: State | None = None
        self.bad_steps = 0  # NaN/inf steps in a row, as last checked
        self.bad_run = torch.zeros((), dtype=torch.int64, device=self.device)  # on device: no sync per step
        self.skipped = torch.zeros((), dtype=torch.int64, device=self.device)  # skipped updates since the check
        self.check_each_step = self.device.type == "cpu"  # a host sync is free on CPU, costly on a GPU
        self.save_failures = 0  # failed checkpoint writes in a row
        self.interrupted: int | None = None  # the signal that asked us to stop
        self.best_on_disk: float | None = None  # a best saved after the checkpoint we resumed from
        if base is not None:
            self.load_weights(base)
        if resume is not None:
            self.restore(resume)
            self.truncate_metrics(self.state.step)
            self.best_on_disk = newer_best(self.run_dir / BEST, self.state.step)
        self.eval_every = Interval.parse(self.config.eval_every)
        self.save_every = Interval.parse(self.config.save_every)
        self.write_config()

    def load_corpus(self, base: Checkpoint | None) -> Corpus:
        """Read and encode the corpus; under torchrun rank 0 goes first so the others hit its id cache."""
        options = self.options
        if self.world.distributed and "-" in options.corpus:
            # Each rank would read the one pipe: rank 0 drains it and the others see an empty corpus.
            raise ConfigError("a corpus from stdin (-) cannot be shared by torchrun's processes; save it to a file")
        if self.world.distributed and not self.world.is_main:
            self.team.barrier()
        try:
            return load_corpus(
                options.corpus,
                options.errors,
                vocab=base.vocab if base else None,
                separator=options.doc_separator,
                progress=getattr(self.observer, "on_corpus_progress", None),
            )
        except CorpusError as exc:
            if base is None or "vocabulary" not in str(exc):
                raise
            raise CorpusError(f"--init-from {base.path}: {exc}; fine-tune only on text it can spell") from None
        finally:
            if self.world.distributed and self.world.is_main:
                self.team.barrier()

    def wrap(self, model: CharRNN) -> torch.nn.Module:
        """The module the loop calls: DDP around the model under torchrun, the model itself otherwise."""
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # -- bookkeeping -------------------------------------------------------------------------

    def write_config(self) -> None:
        if not self.world.is_main:
            return
        resolved = {
            "command": self.options.command,
            "options": asdict(self.options),
            "model_config": self.model_config.to_dict(),
            "train_config": asdict(self.config),
            "corpus": self.corpus_meta(),
            "device": str(self.device),
            "threads": self.threads,
            "world_size": self.world.size,
        }
        atomic_write(self.run_dir / CONFIG, (json.dumps(resolved, indent=2, ensure_ascii=False) + "\n").encode())

    def corpus_meta(self) -> dict[str, Any]:
        return {
            "sources": list(self.corpus.sources),
            "paths": [s if s == "-" else str(Path(s).resolve()) for s in self.corpus.sources],
            "digest": self.corpus.digest,
            "separator": self.corpus.separator,
            "skipped": [list(item) for item in self.corpus.skipped],
            "chars": self.corpus.num_chars,
            "train_chars": int(self.train_ids.size),
            "val_chars": self.corpus.num_chars - int(self.train_ids.size),
            "val_scored_chars": max(0, int(self.val_ids.size) - 1),
        }

    def banner(self) -> dict[str, Any]:
        budget = []
        if self.config.time_s:
            budget.append(f"{self.config.time_s:g}s")
        if self.config.steps:
            budget.append(f"{self.config.steps} steps")
        if self.config.epochs:
            budget.append(f"{self.config.epochs:g} epochs")
        return {
            "corpus": self.corpus_meta(),
            "vocab_size": self.corpus.vocab.size,
            "model": self.model_config.to_dict(),
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "threads": self.threads,
            "world_size": self.world.size,
            "backend": self.team.backend,
            "batch_size": self.config.batch_size,
            "seq_len": self.config.seq_len,
            "lr": self.config.lr,
            "budget": " or ".join(budget),
            "eval_every": str(self.eval_every),
            "windows_per_epoch": self.batcher.windows_per_epoch,
            "run_dir": str(self.run_dir),
            "resumed_from": self.resumed_from,
            "resumed_step": self.state.step if self.resumed_from else None,
            "sample": self.preview,
            "budget_steps": self.config.steps,
            "budget_s": self.config.time_s,
        }

    def preview(self, length: int = 80, temperature: float = 0.8) -> str:
        """A short sample from the model as it is now, for progress displays (seeded: no RNG is disturbed)."""
        from charrnn.sampling.generate import SampleSettings, generate

        settings = SampleSettings(temperature)
        try:
            return "".join(generate(self.model, self.corpus.vocab, "", length, settings, 0, self.device))
        finally:
            self.model.train()

    def append_metrics(self, row: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics_row(row), ensure_ascii=False, allow_nan=False) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop log rows past `step` (written after the checkpoint we continue from) and torn lines."""
        path = self.run_dir / METRICS
        if not self.world.is_main or not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                kept.append(line + "\n")
        atomic_write(path, "".join(kept).encode("utf-8"))

    def load_weights(self, ckpt: Checkpoint) -> None:
        try:
            self.model.load_state_dict(ckpt.weights, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{ckpt.path}: weights do not match the stored config ({first})") from None

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from `ckpt` exactly: weights, optimizer, counters, data position, state, RNG."""
        self.load_weights(ckpt)
        try:
            self.optimizer.load_state_dict(optimizer_state(ckpt))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{ckpt.path}: optimizer state does not fit the model ({exc})") from None
        self.optimizer.param_groups[0]["weight_decay"] = self.config.weight_decay
        for group in self.optimizer.param_groups:  # checkpoints from before fused AdamW stored fused=None
            group["fused"], group["foreach"] = True, None
        self.state = run_state(ckpt)
        self.carried = slice_state(carried_state(ckpt, self.device), self.rows)
        self.restore_rng(ckpt)

    def restore_rng(self, ckpt: Checkpoint) -> None:
        """This rank's RNG as saved; a run resumed by a different number of processes is re-seeded."""
        saved_world = ckpt.meta.get("world_size", 1)
        per_rank = {"cpu": ckpt.extra.get("rng.torch.ranks"), "cuda": ckpt.extra.get("rng.cuda.ranks")}
        if saved_world != self.world.size:
            torch.manual_seed(self.config.seed + self.world.rank + self.state.step)
            if self.world.is_main:
                self.observer.on_warning(
                    f"this run was trained by {saved_world} process(es) and goes on with {self.world.size}: its "
                    f"{self.config.batch_size} streams are re-sharded and dropout randomness differs from an "
                    "uninterrupted run"
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
        carried = gather_state(self.team, self.carried)
        rng = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.world.distributed:
            rng.update({f"{key}.ranks": self.team.gather_cpu(value) for key, value in list(rng.items())})
        if not self.world.is_main:
            return path
        weights = self.model.state_dict()
        if not all_finite(weights):
            raise NonFiniteWeights(f"weights contain NaN/inf; {path} was not written")
        optim, groups = optimizer_tensors(self.optimizer)
        extra = {**optim, **state_tensors(carried), **rng}
        state = self.state
        meta = {
            "kind": name.split(".")[0],
            "step": state.step,
            "epoch": state.epoch,
            "window": state.window,
            "elapsed_s": round(state.elapsed_s, 3),
            "best_val_loss": state.best_val_loss,
            "best_step": state.best_step,
            "evals_without_improvement": state.evals_without_improvement,
            "last_eval_step": state.last_eval_step,
            "lr_scale": state.lr_scale,
            "rollbacks": state.rollbacks,
            "world_size": self.world.size,
            "options": {**asdict(self.options), "resume": None, "init_from": None},
            "train_config": asdict(self.config),
            "optimizer": {"param_groups": groups},
            "corpus": self.corpus_meta(),
            "history": self.state.history[-HISTORY_LIMIT:],
            "command": self.options.command,
            "versions": {"charrnn": __version__, "torch": torch.__version__, "python": sys.version.split()[0]},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        save_checkpoint(path, self.model_config, self.corpus.vocab, weights, meta, extra)
        return path

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
        if self.save_failures >= self.options.max_save_failures:
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

    def roll_back(self) -> None:
        """After `max_bad_steps` NaN/inf steps in a row: reload last with a lower lr, or give up."""
        last, state = self.run_dir / LAST, self.state
        lr_now = self.config.lr * state.lr_scale
        if state.rollbacks >= MAX_ROLLBACKS or not last.is_file():
            why = f"after {state.rollbacks} rollbacks" if last.is_file() else "with no checkpoint to roll back to"
            raise TrainingError(
                f"training diverged: loss or gradients were NaN/inf for {self.bad_steps} steps in a row at step "
                f"{state.step} {why}; start again with a lower --lr (peak now {lr_now:.3g}) or --grad-clip"
            )
        scale, rollbacks = state.lr_scale * ROLLBACK_LR_FACTOR, state.rollbacks + 1
        elapsed = state.elapsed_s
        self.restore(load_checkpoint(last))
        self.state.lr_scale, self.state.rollbacks, self.state.elapsed_s = scale, rollbacks, elapsed
        self.truncate_metrics(self.state.step)
        self.observer.on_warning(
            f"{self.bad_steps} steps in a row had NaN/inf loss or gradients; rolled back to step "
            f"{self.state.step} ({last.name}) with the learning rate scaled by {scale:g}"
        )
        self.bad_steps = 0

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM ask the loop to finish its step and save; a second one stops at once.

        Under torchrun the first Ctrl-C reaches each rank twice (from the terminal, then
        forwarded by torchrun), so there a repeat within `DUPLICATE_SIGNAL_S` is not a second one.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        first_at: list[float] = []

        def handler(signum: int, frame: object) -> None:
            if first_at:
                duplicate = self.world.distributed and time.monotonic() - first_at[0] < DUPLICATE_SIGNAL_S
                if not duplicate:
                    raise KeyboardInterrupt
                return
            first_at.append(time.monotonic())
            self.interrupted = signum

        previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # -- the loop ----------------------------------------------------------------------------

    def validate(self) -> float:
        """Validation loss; under torchrun each rank scores its share and the sums are all-reduced."""
        shard = (self.world.rank, self.world.size)
        start = time.perf_counter()
        result = evaluate_ids(self.model, self.val_ids, self.device, self.dtype, shard=shard, reduce=self.team.sum)
        self.reserve_s = self.final_validation_reserve(time.perf_counter() - start)
        return result.loss

    def final_validation_reserve(self, seconds: float) -> float:
        """Seconds of a time budget kept for the validation that follows the last step (0 without one).

        `--time X` then ends near X, not X plus a validation (6 s for 2x512 on two cores). It is the
        last validation's measured time, or an estimate before the first; never over a quarter of X.
        """
        if not self.has_val or self.config.time_s is None:
            return 0.0
        return min(seconds, FINAL_VAL_MAX_SHARE * self.config.time_s)

    def run_validation(self, t0: float) -> bool:
        """Validate, record, keep the best checkpoint; True when patience has run out."""
        val_loss = self.validate()
        state = self.state
        improved = math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss)
        state.last_eval_step = state.step
        row = {
            "event": "val",
            "step": state.step,
            "epoch": round(self.epochs_done(), 4),
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "val_loss": json_number(val_loss),
            "val_bpc": json_number(val_loss / math.log(2)),
            "best": improved,
        }
        state.history.append(row)  # before saving, so the best checkpoint's history includes it
        if improved:
            state.best_val_loss, state.best_step = val_loss, state.step
            state.evals_without_improvement = 0
            if self.best_on_disk is None or val_loss < self.best_on_disk:  # never replace a better best
                self.try_save(BEST)
                self.best_on_disk = None
        else:
            state.evals_without_improvement += 1
        self.append_metrics(row)
        self.observer.on_eval(row)
        patience = self.config.patience
        return patience is not None and state.evals_without_improvement >= patience

    def epochs_done(self) -> float:
        return self.state.epoch + self.state.window / self.batcher.windows_per_epoch

    def budget_reason(self, elapsed: float) -> str | None:
        config, state = self.config, self.state
        if config.steps is not None and state.step >= config.steps:
            return "steps"
        if config.time_s is not None and elapsed >= config.time_s:
            return "time"
        if config.epochs is not None and self.epochs_done() >= config.epochs:
            return "epochs"
        return None

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
        x, y = self.batcher.window(self.state.window, pin=self.device.type == "cuda")
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.dtype):
            logits, carried = self.net(x, self.carried)  # [rows, T, V]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or float("inf"))
        bad = ~torch.isfinite(grad_norm)
        if not self.world.distributed:  # (a rank's own loss could differ; its gradients cannot)
            bad |= ~torch.isfinite(loss)
        self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        self.optimizer.step()
        self.carried = keep_finite_state(bad, carried, self.carried)
        self.bad_run = (self.bad_run + 1) * bad
        self.skipped += bad
        self.state.step += 1
        self.state.window += 1
        return loss.detach(), grad_norm.detach(), bad

    def check_health(self) -> None:
        """Report skipped NaN/inf steps and roll back after `max_bad_steps` in a row (one host sync)."""
        skipped, self.bad_steps = int(self.skipped), int(self.bad_run)
        if not skipped:
            return
        self.skipped.zero_()
        step = self.state.step
        where = f"step {step}" if skipped == 1 else f"{skipped} steps up to step {step}"
        self.observer.on_warning(f"{where}: loss or gradients are NaN/inf; update skipped")
        if self.bad_steps >= self.options.max_bad_steps:
            self.roll_back()
            self.bad_run.zero_()

    def run(self) -> TrainResult:
        """Train until a budget, patience or a signal stops the run; then validate and save.

        Ctrl-C / SIGTERM finish the current step, save `last` and raise `Interrupted`.
        """
        clean = False
        try:
            result = self.loop()
            clean = True
            return result
        except Interrupted:
            clean = True
            raise
        finally:
            self.net = self.model  # DDP's reducer goes before its process group
            self.team.close(clean)

    def decide(self, now: float, t0: float, marks: dict[str, float]) -> tuple[str | None, bool, bool, bool, int]:
        """(stop reason, log?, validate?, save?, signal) for this step, agreed by all ranks."""
        state = self.state
        wanted = self.team.agree(
            [
                STOP_REASONS.index(self.budget_reason(now - t0 + self.reserve_s) or ""),
                now - marks["log"] >= LOG_EVERY_S,
                self.has_val and self.eval_every.due(state.step, state.last_eval_step, now, marks["eval"]),
                self.save_every.due(state.step, int(marks["save_step"]), now, marks["save"]),
                self.interrupted or 0,
            ]
        )
        signum = wanted[4]
        if signum:
            self.interrupted = signum  # another rank's Ctrl-C stops this one too
        return STOP_REASONS[wanted[0]] or None, bool(wanted[1]), bool(wanted[2]), bool(wanted[3]), signum

    def loop(self) -> TrainResult:
        self.net.train()
        self.observer.on_start(self.banner())
        for message in self.warnings:
            self.observer.on_warning(message)
        state = self.state
        t0 = time.perf_counter() - state.elapsed_s  # a resumed run keeps its clock
        start = time.perf_counter()
        marks = {"log": start, "eval": start, "save": start, "save_step": float(state.step)}
        last_log_step = state.step
        loss_sum = torch.zeros((), device=self.device)
        loss_count = torch.zeros((), device=self.device)
        grad_norm = torch.zeros((), device=self.device)
        stop_reason = self.budget_reason(state.elapsed_s + self.reserve_s)  # a resumed run may have no budget left
        if stop_reason:
            self.observer.on_warning(f"the run's {stop_reason} budget is already spent; give a larger one to go on")
        with self.stop_on_signals():
            while stop_reason is None:
                now = time.perf_counter()
                progress = self.config.progress(state.step, now - t0 + self.reserve_s, self.epochs_done())
                lr = self.config.lr_at(state.step, progress) * state.lr_scale
                loss, grad_norm, bad = self.step(lr)
                loss_sum += torch.where(bad, 0.0, loss)
                loss_count += (~bad).float()
                if self.check_each_step:
                    self.check_health()
                now = time.perf_counter()
                state.elapsed_s = now - t0
                stop_reason, log_due, eval_due, save_due, signum = self.decide(now, t0, marks)
                if log_due or stop_reason or signum:
                    if not self.check_each_step:
                        self.check_health()
                    total_loss, count = (float(v) for v in self.team.sum(torch.stack([loss_sum, loss_count])))
                    train_loss = total_loss / count if count else math.nan
                    steps = self.state.step - last_log_step
                    row = {
                        "event": "train",
                        "step": self.state.step,
                        "epoch": round(self.epochs_done(), 4),
                        "elapsed_s": round(self.state.elapsed_s, 3),
                        "chars_per_s": round(steps * self.batcher.chars_per_window / max(now - marks["log"], 1e-9), 1),
                        "lr": lr,
                        "train_loss": json_number(train_loss),
                        "train_bpc": json_number(train_loss / math.log(2)),
                        "grad_norm": json_number(float(grad_norm.item())),
                        # of the whole run, the final validation included (the lr schedule's `progress`
                        # counts that validation as spent already, to reach zero at the last step)
                        "progress": round(self.config.progress(state.step, now - t0, self.epochs_done()), 4),
                    }
                    self.append_metrics(row)
                    self.observer.on_log(row)
                    loss_sum.zero_()
                    loss_count.zero_()
                    marks["log"], last_log_step = now, self.state.step
                if self.state is not state:  # rolled back to the last checkpoint: the budget is not spent
                    state = self.state
                    marks["save_step"] = float(state.step)
                    last_log_step = min(last_log_step, state.step)
                    if not signum:
                        stop_reason = None
                        continue
                if eval_due and not stop_reason:
                    if self.run_validation(t0):
                        stop_reason = "patience"
                    marks["eval"] = time.perf_counter()
                    marks["log"] += marks["eval"] - now  # throughput counts training time only
                if save_due and not stop_reason:
                    self.try_save(LAST)
                    marks["save"], marks["save_step"] = time.perf_counter(), float(state.step)
                    marks["log"] += marks["save"] - now
                if signum and not stop_reason:
                    stop_reason = signal.Signals(signum).name
            interrupted = self.interrupted is not None and stop_reason == signal.Signals(self.interrupted).name
            if self.has_val and state.last_eval_step != state.step and not interrupted:
                self.run_validation(t0)
            if not self.has_val:
                self.observer.on_warning("no validation text (--val-frac 0 or a tiny corpus): best = last")
            last_path = self.final_save(LAST)
            best_path = self.run_dir / BEST
            if not self.team.share(best_path.exists()):
                self.final_save(BEST)
        elapsed = time.perf_counter() - t0
        result = TrainResult(
            run_dir=self.run_dir,
            best_path=best_path,
            last_path=last_path,
            best_val_loss=state.best_val_loss,
            steps=state.step,
            epochs=self.epochs_done(),
            elapsed_s=elapsed,
            chars_per_s=state.step * self.batcher.chars_per_window / max(state.elapsed_s, 1e-9),
            stop_reason=stop_reason,
        )
        self.observer.on_end(result)
        if interrupted and self.interrupted is not None:
            raise Interrupted(
                f"{stop_reason} at step {state.step}; saved {last_path}; "
                f"continue with: charrnn train --resume {self.run_dir}",
                SIGNAL_EXIT.get(signal.Signals(self.interrupted), 130),
            )
        return result


def resumed_options(options: TrainOptions, ckpt: Checkpoint, run_dir: Path, changes: dict[str, Any]) -> TrainOptions:
    """The run's own options (from its checkpoint) with the allowed changes applied."""
    known = {f.name for f in fields(TrainOptions)}
    merged = {k: v for k, v in (ckpt.meta.get("options") or {}).items() if k in known}
    merged.update(changes)
    corpus_meta = ckpt.meta.get("corpus") or {}
    stored = corpus_meta.get("paths") or corpus_meta.get("sources") or []
    merged.update(
        corpus=tuple(options.corpus) or tuple(stored),
        out=str(run_dir),
        resume=options.resume,
        init_from=None,
        command=options.command,
    )
    return replace(TrainOptions(corpus=()), **merged)


RUN_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,),
    "epoch": (int,),
    "window": (int,),
    "elapsed_s": (int, float),
    "best_val_loss": (int, float, type(None)),
    "best_step": (int, type(None)),
    "evals_without_improvement": (int,),
    "last_eval_step": (int,),
    "lr_scale": (int, float),
    "rollbacks": (int,),
    "history": (list,),
}


def run_state(ckpt: Checkpoint) -> RunState:
    """The counters stored in `ckpt`, type-checked (metadata is data from a file, not trusted code)."""
    values = {k: ckpt.meta[k] for k in RUN_STATE_TYPES if k in ckpt.meta}
    for key, value in values.items():
        if not isinstance(value, RUN_STATE_TYPES[key]) or isinstance(value, bool):
            raise CheckpointError(f"{ckpt.path}: malformed checkpoint metadata ({key} = {str(value)[:40]!r})")
    return RunState(**values)


def newer_best(path: Path, step: int) -> float | None:
    """Loss of a best checkpoint written after `step` (by a run killed before its next `last`)."""
    try:
        meta = load_checkpoint(path).meta
    except CheckpointError:
        return None
    loss = meta.get("best_val_loss")
    later = isinstance(meta.get("step"), int) and meta["step"] > step
    return float(loss) if later and isinstance(loss, (int, float)) and not isinstance(loss, bool) else None


def stored_train_config(ckpt: Checkpoint) -> TrainConfig:
    try:
        config = TrainConfig(**ckpt.meta["train_config"])
        check_positive(config)
        return config
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{ckpt.path}: holds no usable training schedule; it cannot be resumed") from None


def check_same_corpus(ckpt: Checkpoint, corpus: Corpus) -> None:
    """A resumed run must read the very bytes it was trained on (and so the same vocab)."""
    stored = ckpt.meta.get("corpus") or {}
    if stored.get("digest") != corpus.digest:
        raise CorpusError(
            f"--resume: the corpus ({', '.join(corpus.sources)}) is not the one this run was trained on "
            f"(sha256 {corpus.digest[:12]} vs {str(stored.get('digest'))[:12]}); "
            "pass the original corpus, or fine-tune on the new text with --init-from"
        )
    if corpus.vocab.chars != ckpt.vocab.chars:
        raise CorpusError("--resume: the corpus gives a different vocabulary than the checkpoint's")
    if stored.get("chars") not in (None, corpus.num_chars):
        # Same bytes, other text: the files are joined differently (an older charrnn, another separator).
        raise CorpusError(
            f"--resume: the corpus now encodes to {corpus.num_chars:,} chars, the run was trained on "
            f"{stored['chars']:,}; resume with the charrnn and --doc-separator that started it"
        )


def train(options: TrainOptions, observer: TrainObserver | None = None) -> TrainResult:
    """Train a model as `charrnn train` does; returns where the checkpoints are and how it went."""
    return Trainer(options, observer).run()
