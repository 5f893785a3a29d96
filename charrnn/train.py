"""The training loop: truncated BPTT over carried streams, AdamW, clipping, warmup + cosine, budgets.

One straight loop (`Trainer.run`). Everything a run needs to continue exactly (weights,
optimizer moments, step, data position, carried hidden state, RNG) goes into its checkpoints.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from charrnn import __version__
from charrnn.batches import StreamBatcher
from charrnn.checkpoint import save_checkpoint
from charrnn.corpus import Corpus, load_corpus, split_train_val
from charrnn.device import autocast, configure_threads, dtype_name, resolve_device, resolve_dtype
from charrnn.durations import Interval, parse_duration
from charrnn.errors import ConfigError
from charrnn.evaluate import evaluate_ids
from charrnn.metrics import metrics_row
from charrnn.model import CharRNN, ModelConfig, State, detach_state
from charrnn.plan import DEFAULT_TIME_S, make_plan
from charrnn.runs import BEST, CONFIG, LAST, METRICS, new_run_dir

HISTORY_LIMIT = 500
LOG_EVERY_S = 2.0


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
    command: str = ""


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
    options: TrainOptions, corpus: Corpus, train_chars: int, device: torch.device, dtype: torch.dtype
) -> tuple[ModelConfig, TrainConfig]:
    """Flags where given, planned defaults elsewhere."""
    time_s = parse_duration(options.time) if options.time else None
    if time_s is None and options.steps is None and options.epochs is None:
        time_s = DEFAULT_TIME_S
    plan = make_plan(train_chars, corpus.vocab.size, device, dtype, time_s, options.steps, options.epochs)
    model_config = ModelConfig(
        vocab_size=corpus.vocab.size,
        cell=options.cell,
        num_layers=options.num_layers or plan.num_layers,
        hidden_size=options.hidden_size or plan.hidden_size,
        embed_size=options.embed_size or plan.embed_size,
        dropout=plan.dropout if options.dropout is None else options.dropout,
    )
    lr = options.lr or plan.lr
    warmup = options.warmup_steps
    if warmup is None:
        warmup = min(100, max(1, options.steps // 10)) if options.steps else 100
    eval_every = options.eval_every or default_eval_every(time_s, options.steps)
    Interval.parse(eval_every)
    Interval.parse(options.save_every)
    train_config = TrainConfig(
        batch_size=options.batch_size or plan.batch_size,
        seq_len=options.seq_len or plan.seq_len,
        lr=lr,
        min_lr=lr / 10,
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


def default_eval_every(time_s: float | None, steps: int | None) -> str:
    """About four validations per run (the last at the end), never more often than every 15 s."""
    if steps is not None and time_s is None:
        return str(max(1, steps // 4))
    seconds = max(15.0, min(300.0, (time_s or 600.0) / 4))
    return f"{seconds:g}s"


def check_positive(config: TrainConfig) -> None:
    for name in ("batch_size", "seq_len", "lr", "val_max_chars"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if config.grad_clip < 0 or config.weight_decay < 0:
        raise ConfigError("--grad-clip and --weight-decay must not be negative")
    if config.steps is not None and config.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {config.steps}")
    if config.epochs is not None and config.epochs <= 0:
        raise ConfigError(f"--epochs must be positive, got {config.epochs}")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"--patience must be at least 1, got {config.patience}")


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases or the embedding table)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed.")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed.")]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


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


def json_number(value: float | None) -> float | None:
    """Finite floats as they are; NaN/inf become None so the JSON stays valid."""
    return value if value is not None and math.isfinite(value) else None


class Trainer:
    """Owns one run: model, optimizer, data and run directory."""

    def __init__(self, options: TrainOptions, observer: TrainObserver | None = None) -> None:
        self.options = options
        self.observer: TrainObserver = observer or SilentObserver()
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        self.threads = configure_threads(options.threads)
        self.corpus = load_corpus(options.corpus, options.errors)
        self.train_ids, val_ids = split_train_val(self.corpus.ids, options.val_frac)
        self.model_config, self.config = resolve_configs(
            options, self.corpus, int(self.train_ids.size), self.device, self.dtype
        )
        # Validation scores the first `val_max_chars` of the held-out text: all of it for small
        # corpora, a fixed sample for big ones, so validating never stalls training for long.
        self.val_ids = val_ids[: self.config.val_max_chars + 1]
        self.batcher = StreamBatcher(self.train_ids, self.config.batch_size, self.config.seq_len)
        self.has_val = self.val_ids.size >= 2
        self.run_dir = new_run_dir(options.out, self.corpus.sources)
        torch.manual_seed(self.config.seed)
        self.model = CharRNN(self.model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, self.config)
        self.state = RunState()
        self.carried: State | None = None
        self.eval_every = Interval.parse(self.config.eval_every)
        self.save_every = Interval.parse(self.config.save_every)
        self.write_config()

    # -- bookkeeping -------------------------------------------------------------------------

    def write_config(self) -> None:
        resolved = {
            "command": self.options.command,
            "options": asdict(self.options),
            "model_config": self.model_config.to_dict(),
            "train_config": asdict(self.config),
            "corpus": self.corpus_meta(),
            "device": str(self.device),
            "threads": self.threads,
        }
        (self.run_dir / CONFIG).write_text(json.dumps(resolved, indent=2, ensure_ascii=False) + "\n")

    def corpus_meta(self) -> dict[str, Any]:
        return {
            "sources": list(self.corpus.sources),
            "digest": self.corpus.digest,
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
            "batch_size": self.config.batch_size,
            "seq_len": self.config.seq_len,
            "lr": self.config.lr,
            "budget": " or ".join(budget),
            "eval_every": str(self.eval_every),
            "windows_per_epoch": self.batcher.windows_per_epoch,
            "run_dir": str(self.run_dir),
            "sample": self.preview,
            "budget_steps": self.config.steps,
            "budget_s": self.config.time_s,
        }

    def preview(self, length: int = 80, temperature: float = 0.8) -> str:
        """A short sample from the model as it is now, for progress displays (seeded: no RNG is disturbed)."""
        from charrnn.sample import SampleSettings, generate

        settings = SampleSettings(temperature)
        try:
            return "".join(generate(self.model, self.corpus.vocab, "", length, settings, 0, self.device))
        finally:
            self.model.train()

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics_row(row), ensure_ascii=False, allow_nan=False) + "\n")

    def save(self, name: str) -> Path:
        """Write best or last: weights, optimizer, counters, carried state, RNG, history."""
        path = self.run_dir / name
        optim, groups = optimizer_tensors(self.optimizer)
        extra = {**optim, **state_tensors(self.carried), "rng.torch": torch.get_rng_state()}
        meta = {
            "kind": name.split(".")[0],
            "step": self.state.step,
            "epoch": self.state.epoch,
            "window": self.state.window,
            "elapsed_s": round(self.state.elapsed_s, 3),
            "best_val_loss": self.state.best_val_loss,
            "best_step": self.state.best_step,
            "train_config": asdict(self.config),
            "optimizer": {"param_groups": groups},
            "corpus": self.corpus_meta(),
            "history": self.state.history[-HISTORY_LIMIT:],
            "command": self.options.command,
            "versions": {"charrnn": __version__, "torch": torch.__version__, "python": sys.version.split()[0]},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        save_checkpoint(path, self.model_config, self.corpus.vocab, self.model.state_dict(), meta, extra)
        return path

    # -- the loop ----------------------------------------------------------------------------

    def validate(self) -> float:
        result = evaluate_ids(self.model, self.val_ids, self.device, self.dtype)
        return result.loss

    def run_validation(self, t0: float) -> bool:
        """Validate, record, keep the best checkpoint; True when patience has run out."""
        val_loss = self.validate()
        state = self.state
        improved = state.best_val_loss is None or val_loss < state.best_val_loss
        if improved and math.isfinite(val_loss):
            state.best_val_loss, state.best_step = val_loss, state.step
            state.evals_without_improvement = 0
            self.save(BEST)
        else:
            state.evals_without_improvement += 1
        row = {
            "event": "val",
            "step": state.step,
            "epoch": round(self.epochs_done(), 4),
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "val_loss": json_number(val_loss),
            "val_bpc": json_number(val_loss / math.log(2)),
            "best": improved,
        }
        state.history.append(row)
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

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One window: forward under autocast, fp32 loss, backward, clip, AdamW update."""
        if self.state.window >= self.batcher.windows_per_epoch:
            self.state.epoch += 1
            self.state.window = 0
            self.carried = None
        x, y = self.batcher.window(self.state.window)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.dtype):
            logits, carried = self.model(x, self.carried)  # [B, T, V]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or float("inf"))
        self.optimizer.step()
        self.carried = detach_state(carried)
        self.state.step += 1
        self.state.window += 1
        return loss.detach(), grad_norm.detach()

    def run(self) -> TrainResult:
        self.model.train()
        self.observer.on_start(self.banner())
        state, config = self.state, self.config
        t0 = time.perf_counter()
        last_log_t, last_log_step = t0, 0
        last_eval_t, last_eval_step = t0, 0
        last_save_t, last_save_step = t0, 0
        loss_sum = torch.zeros((), device=self.device)
        loss_count = 0
        grad_norm = torch.zeros((), device=self.device)
        stop_reason: str | None = None
        while stop_reason is None:
            now = time.perf_counter()
            progress = config.progress(state.step, now - t0, self.epochs_done())
            lr = config.lr_at(state.step, progress)
            loss, grad_norm = self.step(lr)
            loss_sum += loss
            loss_count += 1
            now = time.perf_counter()
            state.elapsed_s = now - t0
            stop_reason = self.budget_reason(state.elapsed_s)
            if now - last_log_t >= LOG_EVERY_S or stop_reason:
                train_loss = float(loss_sum.item()) / loss_count
                steps = state.step - last_log_step
                row = {
                    "event": "train",
                    "step": state.step,
                    "epoch": round(self.epochs_done(), 4),
                    "elapsed_s": round(state.elapsed_s, 3),
                    "chars_per_s": round(steps * self.batcher.chars_per_window / max(now - last_log_t, 1e-9), 1),
                    "lr": lr,
                    "train_loss": json_number(train_loss),
                    "train_bpc": json_number(train_loss / math.log(2)),
                    "grad_norm": json_number(float(grad_norm.item())),
                    "progress": round(progress, 4),
                }
                self.append_metrics(row)
                self.observer.on_log(row)
                loss_sum.zero_()
                loss_count = 0
                last_log_t, last_log_step = now, state.step
            if self.has_val and not stop_reason and self.eval_every.due(state.step, last_eval_step, now, last_eval_t):
                if self.run_validation(t0):
                    stop_reason = "patience"
                last_eval_t, last_eval_step = time.perf_counter(), state.step
                last_log_t += last_eval_t - now  # throughput counts training time only
            if not stop_reason and self.save_every.due(state.step, last_save_step, now, last_save_t):
                self.save(LAST)
                last_save_t, last_save_step = time.perf_counter(), state.step
                last_log_t += last_save_t - now
        if self.has_val and last_eval_step != state.step:
            self.run_validation(t0)
        if not self.has_val:
            self.observer.on_warning("no validation text (--val-frac 0 or a tiny corpus): best = last")
        last_path = self.save(LAST)
        best_path = self.run_dir / BEST
        if not best_path.exists():
            self.save(BEST)
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
        return result


def train(options: TrainOptions, observer: TrainObserver | None = None) -> TrainResult:
    """Train a model as `charrnn train` does; returns where the checkpoints are and how it went."""
    return Trainer(options, observer).run()
