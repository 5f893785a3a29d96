"""What a checkpoint must hold to be resumed exactly, checked before any of it is used.

The digest proves a file is intact, not that it was written by charrnn: anyone can forge a file and
recompute it. So every tensor of the training state is checked against what the stored model and
schedule imply (the optimizer's moments have their parameter's shape, the carried state has the
batch's, the RNG state is a byte vector of the generator's length) and every stored schedule and
option value is parsed, before `--resume` hands anything to torch. `charrnn verify` runs exactly
these checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from charrnn.errors import CheckpointError
from charrnn.model import CharRNN
from charrnn.store.checkpoint import Checkpoint, verify_checkpoint
from charrnn.training.config import TrainConfig
from charrnn.training.optimizer import OPTIMIZER_SLOTS, make_optimizer
from charrnn.training.resume import recorded_options, stored_train_config


def holds_training_state(ckpt: Checkpoint) -> bool:
    return bool(ckpt.info.train_config or ckpt.info.optimizer) or any(n.startswith("optim.") for n in ckpt.extra)


def verify_run_checkpoint(path: str | Path) -> Checkpoint:
    """`verify_checkpoint`, and for a checkpoint written by training, everything `--resume` relies on."""
    ckpt = verify_checkpoint(path)
    if holds_training_state(ckpt):
        check_resumable(ckpt)
    return ckpt


def check_resumable(ckpt: Checkpoint) -> TrainConfig:
    """The stored schedule, once every part of the training state has been checked (CheckpointError if not)."""
    config = stored_train_config(ckpt)
    recorded_options(ckpt)
    check_corpus_record(ckpt, config)
    check_position(ckpt, config)
    check_optimizer(ckpt, config)
    check_carried(ckpt, config)
    check_average(ckpt, config)
    check_rng(ckpt)
    return config


def check_average(ckpt: Checkpoint, config: TrainConfig) -> None:
    """With --ema the weights being trained sit beside the model (their average) as `raw.*`, one per
    weight (verify_checkpoint checks their shapes); without it there are none."""
    raw = {name[len("raw.") :] for name in ckpt.extra if name.startswith("raw.")}
    if raw != (set(ckpt.weights) if config.ema else set()):
        raise bad(ckpt, "the weights being trained (raw.*) do not match --ema")


def bad(ckpt: Checkpoint, what: str) -> CheckpointError:
    return CheckpointError(f"{ckpt.path}: malformed training state ({what}); it cannot be resumed")


def check_corpus_record(ckpt: Checkpoint, config: TrainConfig) -> None:
    """What resume reads to find and recognise its corpus: sources (and their paths), digest, size."""
    corpus = ckpt.info.corpus

    def strings(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(item, str) and item for item in value)

    if not strings(corpus.get("sources")) or not isinstance(corpus.get("digest"), str):
        raise bad(ckpt, "corpus record without sources or digest")
    if "paths" in corpus and not (strings(corpus["paths"]) and len(corpus["paths"]) == len(corpus["sources"])):
        raise bad(ckpt, "corpus paths")
    for key in ("chars", "train_chars"):
        chars = corpus.get(key)
        if chars is not None and (not isinstance(chars, int) or isinstance(chars, bool) or chars < 0):
            raise bad(ckpt, f"corpus {key} = {str(chars)[:20]!r}")
    train_chars = corpus.get("train_chars")
    if isinstance(train_chars, int) and (train_chars - 1) // config.batch_size < config.seq_len:
        raise bad(ckpt, f"{config.batch_size} streams of {config.seq_len} chars do not fit its {train_chars:,} chars")


def check_position(ckpt: Checkpoint, config: TrainConfig) -> None:
    """The counters agree with each other and the data position lies within an epoch of the text
    (the schema checks each alone; a forged `window` of 10**18 is a whole number too)."""
    info = ckpt.info
    train_chars = info.corpus.get("train_chars")
    if isinstance(train_chars, int):
        stream_len = (train_chars - 1) // (config.batch_size * config.stream_groups)
        windows = stream_len // config.seq_len * config.stream_groups  # as data.batches lays them out
        if info.window > windows:
            raise bad(ckpt, f"window = {info.window}, beyond the {windows} windows of an epoch")
    for name in ("best_step", "last_eval_step"):
        value = getattr(info, name)
        if value is not None and value > info.step:
            raise bad(ckpt, f"{name} = {value}, after the checkpoint's step {info.step}")


def check_optimizer(ckpt: Checkpoint, config: TrainConfig) -> None:
    """The param groups are those of this model's AdamW, each moment shaped like its parameter."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = CharRNN(ckpt.config)
    optimizer = make_optimizer(model, config)
    fresh = optimizer.state_dict()["param_groups"]
    groups: Any = ckpt.info.optimizer.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(fresh):
        raise CheckpointError(f"{ckpt.path}: holds no usable optimizer state; it cannot be resumed (use --init-from)")
    for stored, expected in zip(groups, fresh, strict=True):
        if not isinstance(stored, dict) or stored.get("params") != expected["params"]:
            raise bad(ckpt, "optimizer param groups")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots: dict[int, set[str]] = {}
    for name, tensor in ckpt.extra.items():
        if not name.startswith("optim."):
            continue
        _, index, slot = name.split(".", 2) + [""] * (3 - len(name.split(".", 2)))
        if not index.isdigit() or int(index) >= len(params) or slot not in OPTIMIZER_SLOTS:
            raise bad(ckpt, name)
        shape = () if slot == "step" else tuple(params[int(index)].shape)
        if tensor.dtype != torch.float32 or tuple(tensor.shape) != shape:
            raise bad(ckpt, f"{name} is {tensor.dtype} {tuple(tensor.shape)}, expected float32 {shape}")
        slots.setdefault(int(index), set()).add(slot)
    if any(found != set(OPTIMIZER_SLOTS) for found in slots.values()):
        raise bad(ckpt, "optimizer state with missing slots")


def check_carried(ckpt: Checkpoint, config: TrainConfig) -> None:
    """[layers, batch x stream groups, hidden] floating tensors: h always, c exactly for an LSTM."""
    h, c = ckpt.extra.get("state.h"), ckpt.extra.get("state.c")
    if h is None and c is None:
        return
    model = ckpt.config
    shape = (model.num_layers, config.batch_size * config.stream_groups, model.hidden_size)
    expected = ("state.h", "state.c") if model.cell == "lstm" else ("state.h",)
    present = tuple(name for name in ("state.h", "state.c") if name in ckpt.extra)
    if present != expected:
        raise bad(ckpt, f"carried state {', '.join(present)} for a {model.cell.upper()}")
    for name in expected:  # float32 today; any floating dtype an older run wrote is read and widened
        tensor = ckpt.extra[name]
        if not tensor.dtype.is_floating_point or tuple(tensor.shape) != shape:
            raise bad(ckpt, f"{name} is {tensor.dtype} {tuple(tensor.shape)}, expected float32 {shape}")


def check_rng(ckpt: Checkpoint) -> None:
    """Generator states are uint8 vectors (one row per rank under torchrun) of the generator's length."""
    length = torch.get_rng_state().numel()
    world = ckpt.info.world_size
    for name, tensor in ckpt.extra.items():
        if not name.startswith("rng."):
            continue
        if name not in ("rng.torch", "rng.cuda", "rng.torch.ranks", "rng.cuda.ranks"):
            raise bad(ckpt, name)
        ranks = name.endswith(".ranks")
        cpu = name.startswith("rng.torch")
        ok = tensor.dtype == torch.uint8 and tensor.dim() == (2 if ranks else 1)
        if ok and ranks:
            ok = tensor.size(0) == world
        if ok and cpu:
            ok = tensor.size(-1) == length
        if not ok:
            raise bad(ckpt, f"{name} is {tensor.dtype} {tuple(tensor.shape)}")
