"""Everything a run needs before its first step: options merged with a resumed run's, the corpus,
the configs, the model, the optimizer and the run directory.

`open_run` builds them into `RunParts` (training.parts), from which the trainer (training.loop)
composes its stepper, checkpoints and validation; it hands back the checkpoint a resumed run
continues, for the checkpoints part to restore. How the run's speed is measured and its dtype
picked is one section, at the end: "the probe".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
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
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.checkpoint import Checkpoint, load_weights, verify_checkpoint
from charrnn.store.runs import claim_run_dir, clean_stale_temps, lock_existing_run, resolve_checkpoint, resume_target
from charrnn.training import step_choice
from charrnn.training.config import TrainConfig, check_fits, fixed_values, resolve_configs
from charrnn.training.distributed import Team, World, rank_device, world_from_env
from charrnn.training.ema import WeightAverage
from charrnn.training.observer import SilentObserver, TrainObserver
from charrnn.training.optimizer import make_optimizer
from charrnn.training.options import TrainOptions
from charrnn.training.parts import Held, RunParts, set_tf32
from charrnn.training.plan import assumed_flops, budget_seconds, probe_config, validation_seconds, window_shape
from charrnn.training.probe import Speed, fastest_dtype, measure_speed, probe_steps
from charrnn.training.resume import (
    check_same_corpus,
    init_from_config,
    resume_changes,
    resumed_options,
    stored_train_config,
)
from charrnn.training.run_store import RunStore
from charrnn.training.state_check import check_resumable

COUNT_BLOCK = 1 << 22  # ids counted at a time for the output bias
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


@dataclass(frozen=True)
class Start:
    """Where a run starts: its options (a resumed run's own, with the allowed changes) and checkpoints."""

    options: TrainOptions
    resume: Checkpoint | None  # the checkpoint a resumed run continues
    base: Checkpoint | None  # --init-from: the weights a new run starts from
    changes: dict[str, Any]  # the adjustable options a resume changes
    warnings: tuple[str, ...]  # about those changes


def open_run(options: TrainOptions, observer: TrainObserver | None = None) -> tuple[RunParts, Checkpoint | None]:
    """The run's parts, and the checkpoint a resumed run continues (None for a new run).

    A run that cannot be opened gives back at once what it took (its directory, the process group).
    """
    world = world_from_env()
    observer = (observer or SilentObserver()) if world.is_main else SilentObserver()
    held = Held()
    try:
        start = starting_point(options, world, held)
        device = rank_device(resolve_device(start.options.device), world)
        dtype = resolve_dtype(start.options.dtype.value, device)
        team = Team(world, device)
        try:
            return build_parts(start, observer, team, held, dtype), start.resume
        except BaseException:
            team.close(clean=False)
            raise
    except BaseException:
        held.release()
        raise


def starting_point(options: TrainOptions, world: World, held: Held) -> Start:
    """Merge a resumed run's options and check its checkpoint (locking its directory); read --init-from's."""
    resume: Checkpoint | None = None
    base: Checkpoint | None = None
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    if options.resume is not None and options.init_from is not None:
        raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
    if options.resume is not None:
        run_dir, path = resume_target(options.resume)
        if options.out is not None and Path(options.out).resolve() != run_dir.resolve():
            raise ConfigError(f"--resume continues {run_dir} in place; drop --out {options.out}")
        if world.is_main:
            held.lock = lock_existing_run(run_dir)
        resume = verify_checkpoint(path)
        check_resumable(resume)
        changes, warnings = resume_changes(options, resume)
        options = resumed_options(options, resume, run_dir, changes)
    if options.init_from is not None:
        base = verify_checkpoint(resolve_checkpoint(options.init_from))
    return Start(options, resume, base, changes, tuple(warnings))


def build_parts(start: Start, observer: TrainObserver, team: Team, held: Held, dtype: torch.dtype) -> RunParts:
    """Corpus, configs, model, optimizer and run directory (after the process group is up)."""
    options, world, device, resume, base = start.options, team.world, team.device, start.resume, start.base
    warnings = list(start.warnings)
    threads = configure_threads(
        options.threads or (max(1, available_cores() // world.local_size) if world.distributed else None)
    )
    corpus = read_corpus(options, base, team, observer)
    warnings += skip_warnings(corpus.skipped, corpus.passed_over)
    if resume is not None:
        check_same_corpus(resume, corpus)
    train_ids, val_ids = split_train_val(corpus.ids, options.val_frac)
    speed = Speed(flops=assumed_flops(device, dtype) * world.size, measured=False)
    dtype_note = ""
    plan_why: tuple[str, ...] = ()  # a new run's; a resumed run's plan was made when it started
    if resume is not None:
        model_config = resume.config
        config = stored_train_config(resume).adjusted(start.changes)
        dtype = resumed_dtype(options, config, device, dtype, held)
    else:
        probed = probe_speed(options, corpus, train_ids, team, dtype, speed)
        speed, dtype, dtype_note = probed.speed, probed.dtype, probed.note
        model_config, config, plan = resolve_configs(
            options, corpus, int(train_ids.size), device, dtype, world, speed.flops
        )
        narrower = probe_narrower(probed, model_config, config, team, dtype)
        if narrower is not None:  # plan again from the rate of the model it trains
            speed = narrower
            model_config, config, plan = resolve_configs(
                options, corpus, int(train_ids.size), device, dtype, world, speed.flops
            )
        plan_why = plan.why
        if base is not None:
            model_config = init_from_config(options, base)
        check_fits(model_config)  # before anything is built at this size, a dtype probe included
    # Validation scores the first `val_max_chars` of the held-out text: all of it for small
    # corpora, a fixed sample for big ones, so validating never stalls training for long.
    val_ids = val_ids[: config.val_max_chars + 1]
    rows = world.rows(config.batch_size)
    batcher = StreamBatcher(
        train_ids, config.batch_size, config.seq_len, rows, config.stream_groups, config.alternate_ends
    )
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        batcher.place(device, max_bytes=int(free * RESIDENT_SHARE))
        if resume is None and options.dtype is DType.AUTO and dtype == torch.bfloat16:
            choice = pick_gpu_dtype(model_config, config, team, held)  # (once the batcher has checked the text)
            dtype, config, dtype_note = choice.dtype, choice.config, choice.note
    val_estimate_s = validation_seconds(model_config, int(val_ids.size), speed.flops) / world.size
    run_dir = Path(options.out or "") if resume is not None else pick_run_dir(options, corpus, team, held)
    store = RunStore(run_dir, world.is_main)
    if world.is_main:
        for stale in clean_stale_temps(run_dir):
            warnings.append(f"removed {stale.name}, left by an interrupted save")
    # torch's RNG is the run's from here: seeded for the initial weights (what the probe drew is
    # forgotten), and a resumed run's is put back after this by training.checkpointing
    torch.manual_seed(config.seed)
    check_fits(model_config)  # (a resumed run's, from its checkpoint)
    model = CharRNN(model_config).to(device)
    if resume is None and base is None:
        start_from_frequencies(model, train_ids)
    if world.distributed:  # same initial weights everywhere, then each rank its own dropout masks
        torch.manual_seed(config.seed + world.rank)
    net = wrap(model, team)
    optimizer = make_optimizer(model, config)
    ema = WeightAverage(model, config.ema) if config.ema else None
    if base is not None:  # (after the average is made: it starts from the fresh weights, as runs always have)
        load_weights(model, base)
    return RunParts(
        options=options,
        observer=observer,
        world=world,
        team=team,
        held=held,
        device=device,
        dtype=dtype,
        dtype_note=dtype_note,
        plan_why=plan_why,
        threads=threads,
        speed=speed,
        corpus=corpus,
        train_ids=train_ids,
        val_ids=val_ids,
        val_estimate_s=val_estimate_s,
        model_config=model_config,
        config=config,
        rows=rows,
        batcher=batcher,
        run_dir=run_dir,
        store=store,
        model=model,
        net=net,
        optimizer=optimizer,
        ema=ema,
        resumed_from=resume.path if resume else None,
        warnings=warnings,
    )


def pick_run_dir(options: TrainOptions, corpus: Corpus, team: Team, held: Held) -> Path:
    """Rank 0 picks the (new, unique) directory; the others learn its name, or its error."""
    picked: tuple[str, str] | None = None
    if team.world.is_main:
        try:
            directory, held.lock = claim_run_dir(options.out, corpus.sources)
            picked = (str(directory), "")
        except ConfigError as exc:
            picked = ("", str(exc))
    name, error = team.share(picked)
    if error:  # every rank stops with it: none is left waiting in a collective
        raise ConfigError(error)
    return Path(name)


def read_corpus(options: TrainOptions, base: Checkpoint | None, team: Team, observer: TrainObserver) -> Corpus:
    """Read and encode the corpus; under torchrun rank 0 goes first so the others hit its id cache."""
    world = team.world
    if world.distributed and "-" in options.corpus:
        # Each rank would read the one pipe: rank 0 drains it and the others see an empty corpus.
        raise ConfigError("a corpus from stdin (-) cannot be shared by torchrun's processes; save it to a file")
    if world.distributed and not world.is_main:
        team.barrier()
    try:
        return load_corpus(
            options.corpus,
            options.errors.value,
            vocab=base.vocab if base else None,
            separator=options.doc_separator,
            progress=getattr(observer, "on_corpus_progress", None),
        )
    except CorpusError as exc:
        if base is None or "vocabulary" not in str(exc):
            raise
        raise CorpusError(f"--init-from {base.path}: {exc}; fine-tune only on text it can spell") from None
    finally:
        if world.distributed and world.is_main:
            team.barrier()


def wrap(model: CharRNN, team: Team) -> torch.nn.Module:
    """The module the loop calls: DDP around the model under torchrun, the model itself otherwise."""
    if not team.world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [team.device.index] if team.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


# -- the probe: this machine's training rate, and the dtype `--dtype auto` picks on a GPU ----------


@dataclass(frozen=True)
class DtypeChoice:
    """What `--dtype auto` settled on for a GPU run, and why."""

    dtype: torch.dtype
    config: TrainConfig  # the run's config with that dtype recorded (a resume keeps it)
    note: str  # for the banner


@dataclass(frozen=True)
class Probed:
    """What the start-up probe found: the rate the plan works from, and the step `--dtype auto` runs."""

    speed: Speed
    dtype: torch.dtype
    note: str  # how `auto` chose, where it measured (for the banner)
    timed: ModelConfig | None = None  # the model timed (None: nothing was)


def team_speed(team: Team, speed: Speed) -> Speed:
    """Rank 0's measured rate, for every rank, as the rate of all ranks together."""
    shared = Speed(**team.share(asdict(speed)))
    return replace(shared, flops=shared.flops * team.world.size)


def probe_speed(
    options: TrainOptions, corpus: Corpus, train_ids: np.ndarray, team: Team, dtype: torch.dtype, assumed: Speed
) -> Probed:
    """This machine's training rate, timed where a time budget needs it (rank 0's, for all ranks),
    and with `--dtype auto` on a CPU with native bf16 the faster of its candidate steps (step_choice).

    The plan turns the rate into passes over the text; without a time budget the steps or epochs
    give the passes directly, and the `assumed` rate only sizes the validation-time estimate.
    """
    if budget_seconds(options.time, options.steps, options.epochs) is None:
        return Probed(assumed, dtype, "")
    world, device = team.world, team.device
    train_chars = int(train_ids.size)
    fixed = fixed_values(options)
    config = probe_config(train_chars, corpus.vocab.size, options.cell.value, fixed)
    check_fits(config)  # sizes from flags: refused before the probe builds them
    batch, seq_len = window_shape(train_chars, device, fixed)
    check_layout(train_chars, batch, seq_len)
    allowed = step_choice.step_candidates(options.dtype.value, device, dtype)
    picked, speed, note = probe_steps(config, max(1, batch // world.size), seq_len, device, allowed)
    picked, note = team.share((picked, note))
    return Probed(team_speed(team, speed), TORCH_DTYPES[picked], note, config)


def probe_narrower(
    probed: Probed, model_config: ModelConfig, config: TrainConfig, team: Team, dtype: torch.dtype
) -> Speed | None:
    """The rate of the model the plan chose, where the budget made it narrower than the one the probe
    timed (the corpus's own width); None where there is nothing new to time.

    A narrow LSTM uses the machine less well than its FLOPs say (on machine C, 2x384 trained at 0.7x
    the rate 2x512's FLOP/s implied), and the passes the plan expects decide its dropout: planned
    from the wide model's rate, an 80 s run expected 3.2 passes and took dropout 0.25 where it made 2.2.
    """
    if probed.timed is None or model_config.hidden_size >= probed.timed.hidden_size:
        return None
    batch = max(1, config.batch_size // team.world.size)
    return team_speed(team, measure_speed(model_config, batch, config.seq_len, team.device, dtype))


def resumed_dtype(
    options: TrainOptions, config: TrainConfig, device: torch.device, dtype: torch.dtype, held: Held
) -> torch.dtype:
    """A run resumed with `--dtype auto` runs the step `auto` measured and chose at its start, where
    this device runs it natively (step_choice); a GPU's fp32 with TF32 matmuls, as it was timed."""
    if options.dtype is not DType.AUTO:
        return dtype
    dtype = step_choice.resumed_dtype(config.dtype, device, dtype)
    if device.type == "cuda":
        held.use_tf32(dtype == torch.float32)
    return dtype


def pick_gpu_dtype(model_config: ModelConfig, config: TrainConfig, team: Team, held: Held) -> DtypeChoice:
    """`--dtype auto` on a GPU: bf16 or fp32 with TF32 matmuls, whichever trains this run's model
    faster here (rank 0's measurement, for every rank). The choice is stored; a resume keeps it.
    An explicit `--dtype fp32` stays strict fp32."""
    batch = max(1, config.batch_size // team.world.size)
    dtypes = (torch.bfloat16, torch.float32)
    held.use_tf32(True)
    fastest, rates = fastest_dtype(model_config, batch, config.seq_len, team.device, dtypes)
    name = team.share(dtype_name(fastest))
    if name != "fp32" and held.tf32_before is not None:
        set_tf32(held.tf32_before)
    ratio = rates[torch.bfloat16] / rates[torch.float32]
    note = f"auto: bf16 trains {ratio:.2f}x as fast as fp32 with TF32 here"
    return DtypeChoice(TORCH_DTYPES[name], replace(config, dtype=name), note)
