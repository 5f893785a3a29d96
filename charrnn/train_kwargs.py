"""`charrnn.train`'s keyword options as a type, so that a type checker finds a misspelt option or a
wrong type before the run (the options are declared in charrnn.training.options; tests/test_api.py
checks that this TypedDict names every one of them with the type its declaration implies)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

from charrnn.choices import Cell, Decay, DType, Errors


class TrainKwargs(TypedDict, total=False):
    """Every option of `charrnn train`, by flag name with `_` for `-` (None: chosen for the corpus and budget)."""

    out: str | Path | None
    cell: Literal["lstm", "gru", "rnn"] | Cell
    layers: int | None
    hidden: int | None
    embed: int | None
    dropout: float | None
    batch_size: int | None
    seq_len: int | None
    stream_groups: int | None
    lr: float | None
    weight_decay: float | None
    grad_clip: float
    state_reset: float
    ema: float
    decay: Literal["linear", "cosine"] | Decay
    warmup_steps: int | None
    val_frac: float
    val_max_chars: int
    time: str | float | None
    steps: int | None
    epochs: float | None
    patience: int | None
    eval_every: int | str | float | None
    save_every: int | str | float
    resume: str | Path | None
    init_from: str | Path | None
    device: str
    dtype: Literal["auto", "fp32", "bf16", "fp16"] | DType
    threads: int | None
    seed: int
    errors: Literal["strict", "replace", "ignore"] | Errors
    doc_separator: str
    max_bad_steps: int
    max_save_failures: int
