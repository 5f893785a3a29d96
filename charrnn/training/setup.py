"""Everything a run needs before its first step: options merged with a resumed run's, the corpus,
the configs, the model, the optimizer and the run directory.

`RunSetup` is the first of three layers of `Trainer`: setup (here) -> checkpointing -> loop.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn.choices import DType
from charrnn.data.batches import StreamBatcher, check_layout
from charrnn.data.corpus import Corpus, load_corpus, skip_warnings, split_train_val
from charrnn.device import (
    TORCH_DTYPES,
    available_cores,
    configure_threads,
    dtype_name,
    resolve_device,
    resolve_dtype,
)
from charrnn.errors import ConfigError, CorpusError
from charrnn.model import CharRNN, ModelConfig, State
from charrnn.store.checkpoint import Checkpoint, verify_checkpoint
from charrnn.store.lock import RunLock
from charrnn.store.meta import RunState
from charrnn.store.runs import (
    BEST,
    claim_run_dir,
    clean_stale_temps,
    lock_existing_run,
    resolve_checkpoint,
    resume_target,
)
from charrnn.training.config import TrainConfig, check_fits, fixed_sizes, resolve_configs, time_budget
from charrnn.training.distributed import Team, rank_device, world_from_env
from charrnn.training.ema import WeightAverage
from charrnn.training.observer import SilentObserver, TrainObserver
from charrnn.training.optimizer import make_optimizer
from charrnn.training.options import TrainOptions
from charrnn.training.plan import assumed_flops, probe_config, validation_seconds, window_shape
from charrnn.training.probe import Speed, fastest_dtype, probe_steps
from charrnn.training.resume import (
    check_same_corpus,
    init_from_config,
    resume_changes,
    resumed_options,
    stored_train_config,
)
from charrnn.training.run_store import RunStore, newer_best
from charrnn.training.state_check import check_resumable
from charrnn.training.step_choice import resumed_dtype, step_candidates

COUNT_BLOCK = 1 << 22  # ids counted at a time for the output bias
FINAL_VAL_MAX_SHARE = 0.25  # of a time budget, at most, kept for the final validation
RESIDENT_SHARE = 0.25  # of a GPU's free memory, at most, for the training text kept on it (data.batches)


def start_from_frequencies(model: CharRNN, train_ids: np.ndarray) -> None:
    """Set the output bias to the log frequency of each character in the training text.

    A fresh model otherwise starts at the uniform loss, ln(vocab), and AdamW moves each bias by
    about one lr per step, so the rare characters' biases (ln p ~ -10) take hundreds of steps to
    get there while every other weight learns around them. Starting at the frequencies removes
    that phase: on Tiny Shakespeare at 320 steps it is the difference between seeds that learn
    and seeds that stall (benchmarks/RESULTS.md, "Seed-to-seed spread").
    """
    counts = np.zeros(model.config.vocab_size, dtype=np.float64)
    for start in range(0, int(train_ids.size), COUNT_BLOCK):  # in blocks: a memory map stays one
        counts += np.bincount(np.asarray(train_ids[start : start + COUNT_BLOCK]), minlength=counts.size)
    log_freq = np.log((counts + 1.0) / (counts.sum() + counts.size))  # +1: a character only in val
    with torch.no_grad():
        model.head.bias.copy_(torch.from_numpy(log_freq - log_freq.mean()))


def set_tf32(on: bool) -> bool:
    """Let cuBLAS's fp32 matmuls use TF32 tensor cores (cuDNN's do by default); returns the previous setting."""
    before = bool(torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = on
    return before


class RunSetup:
    """Owns one run's parts: model, optimizer, data, run directory and the process team."""

    def __init__(self, options: TrainOptions, observer: TrainObserver | None = None) -> None:
        self.world = world_from_env()
        self.observer: TrainObserver = (observer or SilentObserver()) if self.world.is_main else SilentObserver()
        self.warnings: list[str] = []  # reported once the run starts
        self.run_lock: RunLock | None = None  # this process owns the run directory while it holds this
        self.tf32_before: bool | None = None  # the process's TF32 setting, where this run changed it
        try:
            self.open_run(options)
        except BaseException:
            self.release_run()  # a refused run gives its directory back at once
            raise

    def open_run(self, options: TrainOptions) -> None:
        """Merge a resumed run's options, check its checkpoint, then set everything up."""
        resume: Checkpoint | None = None
        base: Checkpoint | None = None
        changes: dict[str, Any] = {}
        if options.resume is not None and options.init_from is not None:
            raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
        if options.resume is not None:
            run_dir, path = resume_target(options.resume)
            if options.out is not None and Path(options.out).resolve() != run_dir.resolve():
                raise ConfigError(f"--resume continues {run_dir} in place; drop --out {options.out}")
            if self.world.is_main:
                self.run_lock = lock_existing_run(run_dir)
            resume = verify_checkpoint(path)
            check_resumable(resume)
            changes, warnings = resume_changes(options, resume)
            self.warnings += warnings
            options = resumed_options(options, resume, run_dir, changes)
        if options.init_from is not None:
            base = verify_checkpoint(resolve_checkpoint(options.init_from))
        self.options = options
        self.resumed_from = resume.path if resume else None
        self.device = rank_device(resolve_device(options.device), self.world)
        self.dtype = resolve_dtype(options.dtype.value, self.device)
        self.dtype_note = ""  # how `--dtype auto` chose, where it measured
        self.team = Team(self.world, self.device)
        try:
            self.prepare(resume, base, changes)
        except BaseException:
            self.team.close(clean=False)
            raise

    def release_run(self) -> None:
        """Give back what the run took (at its end, or when setting it up failed): the run directory,
        and the process's TF32 setting as it was before."""
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None
        if self.tf32_before is not None:
            set_tf32(self.tf32_before)
            self.tf32_before = None

    def use_tf32(self, on: bool) -> None:
        """TF32 matmuls on or off for this run; `release_run` puts the caller's setting back."""
        before = set_tf32(on)
        if self.tf32_before is None:
            self.tf32_before = before

    def prepare(self, resume: Checkpoint | None, base: Checkpoint | None, changes: dict[str, Any]) -> None:
        """Corpus, configs, model, optimizer and run directory (after the process group is up)."""
        options, world = self.options, self.world
        threads = options.threads or (max(1, available_cores() // world.local_size) if world.distributed else None)
        self.threads = configure_threads(threads)
        self.corpus = self.load_corpus(base)
        self.warnings += skip_warnings(self.corpus.skipped, self.corpus.passed_over)
        if resume is not None:
            check_same_corpus(resume, self.corpus)
        self.train_ids, val_ids = split_train_val(self.corpus.ids, options.val_frac)
        self.model_config: ModelConfig
        self.config: TrainConfig
        self.speed = Speed(flops=assumed_flops(self.device, self.dtype) * world.size, measured=False)
        if resume is not None:
            self.model_config = resume.config
            self.config = stored_train_config(resume).adjusted(changes)
            if options.dtype is DType.AUTO:  # the step `auto` measured and chose at the start (step_choice)
                self.dtype = resumed_dtype(self.config.dtype, self.device, self.dtype)
                if self.device.type == "cuda":
                    self.use_tf32(self.dtype == torch.float32)
        else:
            self.speed = self.measure_speed(options)
            self.model_config, self.config = resolve_configs(
                options, self.corpus, int(self.train_ids.size), self.device, self.dtype, world, self.speed.flops
            )
            if base is not None:
                self.model_config = init_from_config(options, base)
            check_fits(self.model_config)  # before anything is built at this size, a dtype probe included
        # Validation scores the first `val_max_chars` of the held-out text: all of it for small
        # corpora, a fixed sample for big ones, so validating never stalls training for long.
        self.val_ids = val_ids[: self.config.val_max_chars + 1]
        self.rows = world.rows(self.config.batch_size)
        config = self.config
        self.batcher = StreamBatcher(
            self.train_ids, config.batch_size, config.seq_len, self.rows, config.stream_groups, config.alternate_ends
        )
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            self.batcher.place(self.device, max_bytes=int(free * RESIDENT_SHARE))
            if resume is None and options.dtype is DType.AUTO and self.dtype == torch.bfloat16:
                self.pick_gpu_dtype()  # (once the batcher has checked the text fills the batch)
        self.has_val = self.val_ids.size >= 2
        self.reserve_s = self.final_validation_reserve(
            validation_seconds(self.model_config, int(self.val_ids.size), self.speed.flops) / world.size
        )
        self.run_dir = Path(options.out or "") if resume is not None else self.pick_run_dir()
        self.store = RunStore(self.run_dir, world.is_main)
        if world.is_main:
            for stale in clean_stale_temps(self.run_dir):
                self.warnings.append(f"removed {stale.name}, left by an interrupted save")
        torch.manual_seed(self.config.seed)
        check_fits(self.model_config)  # (a resumed run's, from its checkpoint)
        self.model = CharRNN(self.model_config).to(self.device)
        if resume is None and base is None:
            start_from_frequencies(self.model, self.train_ids)
        if world.distributed:  # same initial weights everywhere, then each rank its own dropout masks
            torch.manual_seed(self.config.seed + world.rank)
        self.net = self.wrap(self.model)
        self.optimizer = make_optimizer(self.model, self.config)
        self.ema = WeightAverage(self.model, self.config.ema) if self.config.ema else None
        self.state = RunState()
        self.carried: State | None = None
        self.interrupted: int | None = None  # the signal that asked us to stop
        self.best_on_disk: float | None = None  # a best saved after the checkpoint we resumed from
        self.after_setup(resume, base)
        if self.state.val_reserve_s:  # a resumed run keeps the reserve it measured, not a fresh estimate
            self.reserve_s = self.final_validation_reserve(self.state.val_reserve_s)
        if resume is not None:
            self.best_on_disk = newer_best(self.run_dir / BEST, self.state.step)
        self.store.write_config(self.resolved())

    def after_setup(self, resume: Checkpoint | None, base: Checkpoint | None) -> None:
        """Hook for the next layer: load weights or a whole run state."""

    def pick_run_dir(self) -> Path:
        """Rank 0 picks the (new, unique) directory; the others learn its name, or its error."""
        picked: tuple[str, str] | None = None
        if self.world.is_main:
            try:
                directory, self.run_lock = claim_run_dir(self.options.out, self.corpus.sources)
                picked = (str(directory), "")
            except ConfigError as exc:
                picked = ("", str(exc))
        name, error = self.team.share(picked)
        if error:  # every rank stops with it: none is left waiting in a collective
            raise ConfigError(error)
        return Path(name)

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
                options.errors.value,
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

    def measure_speed(self, options: TrainOptions) -> Speed:
        """This machine's training rate, timed where a time budget needs it (rank 0's, for all ranks).

        The plan turns it into passes over the text; without a time budget the steps or epochs
        give the passes directly, and the assumed rate only sizes the validation-time estimate.
        """
        if time_budget(options) is None:
            return self.speed
        train_chars = int(self.train_ids.size)
        fixed = fixed_sizes(options)
        config = probe_config(train_chars, self.corpus.vocab.size, options.cell.value, fixed)
        check_fits(config)  # sizes from flags: refused before the probe builds them
        batch, seq_len = window_shape(train_chars, self.device, fixed)
        check_layout(train_chars, batch, seq_len)
        allowed = step_candidates(options.dtype.value, self.device, self.dtype)  # auto's choice: step_choice
        picked, speed, note = probe_steps(config, max(1, batch // self.world.size), seq_len, self.device, allowed)
        picked, shared, self.dtype_note = self.team.share((picked, asdict(speed), note))
        self.dtype, speed = TORCH_DTYPES[picked], Speed(**shared)
        return replace(speed, flops=speed.flops * self.world.size)

    def pick_gpu_dtype(self) -> None:
        """`--dtype auto` on a GPU: bf16 or fp32 with TF32 matmuls, whichever trains this run's model
        faster here (rank 0's measurement, for every rank). The choice is stored; a resume keeps it.
        An explicit `--dtype fp32` stays strict fp32."""
        batch = max(1, self.config.batch_size // self.world.size)
        dtypes = (torch.bfloat16, torch.float32)
        self.use_tf32(True)
        fastest, rates = fastest_dtype(self.model_config, batch, self.config.seq_len, self.device, dtypes)
        name = self.team.share(dtype_name(fastest))
        if name != "fp32" and self.tf32_before is not None:
            set_tf32(self.tf32_before)
        self.dtype = TORCH_DTYPES[name]
        self.config = replace(self.config, dtype=name)
        ratio = rates[torch.bfloat16] / rates[torch.float32]
        self.dtype_note = f"auto: bf16 trains {ratio:.2f}x as fast as fp32 with TF32 here"

    def planned_epochs(self) -> float | None:
        """The passes the plan stops at (no --epochs given, and the plan set them), else None."""
        return self.config.epochs if self.options.epochs is None else None

    def final_validation_reserve(self, seconds: float) -> float:
        """Seconds of a time budget kept for the validation that follows the last step (0 without one).

        `--time X` then ends near X, not X plus a validation (6 s for 2x512 on two cores). It is the
        last validation's measured time, or an estimate before the first; never over a quarter of X.
        """
        if not self.has_val or self.config.time_s is None:
            return 0.0
        return min(seconds, FINAL_VAL_MAX_SHARE * self.config.time_s)

    # -- what the run says about itself --------------------------------------------------------

    def resolved(self) -> dict[str, Any]:
        """config.json: the options as given, and the model and schedule they resolved to."""
        return {
            "command": self.options.command,
            "options": self.options.to_json(),
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_json(),
            "corpus": self.corpus_meta(),
            "device": str(self.device),
            "threads": self.threads,
            "world_size": self.world.size,
            "speed": asdict(self.speed),
        }

    def record(self) -> dict[str, Any]:
        """The run's description as every checkpoint stores it (beside the counters and tensors)."""
        return {
            "world_size": self.world.size,
            "options": {**self.options.to_json(), "resume": None, "init_from": None},
            "train_config": self.config.to_json(),
            "corpus": self.corpus_meta(),
            "command": self.options.command,
        }

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
            planned = " (planned: more would overfit)" if self.planned_epochs() else ""
            budget.append(f"{self.config.epochs:g} epochs{planned}")
        return {
            "corpus": self.corpus_meta(),
            "vocab_size": self.corpus.vocab.size,
            "model": self.model_config.to_dict(),
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "dtype_note": self.dtype_note,
            "threads": self.threads,
            "world_size": self.world.size,
            "backend": self.team.backend,
            "batch_size": self.config.batch_size,
            "seq_len": self.config.seq_len,
            "stream_groups": self.config.stream_groups,
            "lr": self.config.lr,
            "decay": self.config.decay,
            "budget": " or ".join(budget),
            "eval_every": str(self.config.eval_every),
            "windows_per_epoch": self.batcher.windows_per_epoch,
            "run_dir": str(self.run_dir),
            "resumed_from": self.resumed_from,
            "resumed_step": self.state.step if self.resumed_from else None,
            "sample": self.preview,
            "speed": self.speed.describe() if self.speed.measured else None,
            "budget_steps": self.config.steps,
            "budget_s": self.config.time_s,
        }

    def preview(self, length: int = 80, temperature: float = 0.8) -> str:
        """A short sample from the model as it is now, for progress displays (seeded: no RNG is disturbed)."""
        from charrnn.sampling.controls import RunSettings, SampleSettings
        from charrnn.sampling.generate import generate

        settings, run = SampleSettings(temperature), RunSettings(length=length, seed=0)
        try:
            return "".join(generate(self.model, self.corpus.vocab, "", settings, run, self.device))
        finally:
            self.model.train()
