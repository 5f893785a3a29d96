"""What `--resume` and `--init-from` may change, and what they must refuse.

A resumed run is the same run: its corpus, vocab, model shape and data layout are fixed by the
checkpoint, and changing any of them would make "continue exactly" a lie, so they are refused.
Budget, schedule and runtime knobs may change; each change is reported as a warning. Which is
which is each option's declared `Role` (training.options).
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from charrnn.data.corpus import Corpus
from charrnn.durations import duration_text
from charrnn.errors import CheckpointError, ConfigError, CorpusError
from charrnn.model import ModelConfig
from charrnn.store.checkpoint import Checkpoint
from charrnn.training.config import TrainConfig
from charrnn.training.options import (
    MODEL_FIELDS,
    PREDATES,
    SCHEDULE_KEYS,
    SPECS,
    Kind,
    Role,
    TrainOptions,
    flag,
    stored_values,
    value_text,
)

IDENTITY = tuple(name for name, spec in SPECS.items() if spec.role is Role.IDENTITY)
ADJUSTABLE = tuple(name for name, spec in SPECS.items() if spec.role is Role.ADJUSTABLE)
MODEL_SHAPE = tuple(name for name in MODEL_FIELDS if name != "dropout")  # what --init-from takes as it is


def shown(name: str, value: Any) -> str:
    """A value as the user would write it on the command line."""
    if SPECS[name].kind is Kind.DURATION and isinstance(value, (int, float)):
        return duration_text(float(value))
    return str(value_text(value))


def given(options: TrainOptions) -> dict[str, Any]:
    """The options the user set: those that differ from the declared default, and those named in
    `options.chosen` even at their default (None is never a choice: it asks for the plan)."""
    out = {}
    for f in fields(options):
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(options, f.name)
        if value != default or (f.name in options.chosen and value is not None):
            out[f.name] = value
    return out


def recorded_options(ckpt: Checkpoint) -> dict[str, Any]:
    """The options stored in `ckpt` as it recorded them (None where the plan chose), parsed and checked.

    An option the checkpoint predates takes the value its schedule ran with (its declaration's
    `predates`), not today's default: the run's record must say what the run does.
    """
    try:
        return stored_values({**PREDATES, **ckpt.info.options})
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt.path}: malformed stored options ({exc})") from None


def stored_options(ckpt: Checkpoint) -> dict[str, Any]:
    """The options a run was started with, the identity ones the plan chose filled in from its model
    and schedule (what a resume compares the flags given with)."""
    stored = recorded_options(ckpt)
    for name in MODEL_FIELDS:
        stored[name] = getattr(ckpt.config, name)
    train_config = ckpt.info.train_config
    for name, key in SCHEDULE_KEYS.items():
        if SPECS[name].role is Role.IDENTITY and key in train_config:
            stored[name] = train_config[key]
    return stored


def resume_changes(options: TrainOptions, ckpt: Checkpoint) -> tuple[dict[str, Any], list[str]]:
    """(adjustable options the user changed, warnings); ConfigError when an identity option differs."""
    asked, stored = given(options), stored_options(ckpt)
    refused = [
        f"{flag(k)} {shown(k, asked[k])} (the run has {shown(k, stored[k])})"
        for k in IDENTITY
        if k in asked and k in stored and asked[k] != stored[k]
    ]
    if refused:
        raise ConfigError(
            f"--resume: {'; '.join(refused)}: corpus, vocab, model and data flags cannot change when resuming; "
            "start a new run, or fine-tune with --init-from"
        )
    changes = {k: asked[k] for k in ADJUSTABLE if k in asked and asked[k] != stored.get(k)}
    warnings = [
        f"resuming with {flag(k)} {shown(k, v)} "
        f"(the run had {'the planned default' if stored.get(k) is None else shown(k, stored[k])})"
        for k, v in changes.items()
    ]
    return changes, warnings


def resumed_options(options: TrainOptions, ckpt: Checkpoint, run_dir: Path, changes: dict[str, Any]) -> TrainOptions:
    """The run's own options (from its checkpoint) with the allowed changes applied."""
    merged = recorded_options(ckpt)
    merged.update(changes)
    corpus_meta = ckpt.info.corpus
    stored = corpus_meta.get("paths") or corpus_meta.get("sources") or []
    merged.update(out=str(run_dir), resume=options.resume, init_from=None)
    try:
        return replace(
            TrainOptions(corpus=()), corpus=tuple(options.corpus) or tuple(stored), command=options.command, **merged
        )
    except (TypeError, ValueError):
        raise CheckpointError(f"{ckpt.path}: malformed stored options") from None


def stored_train_config(ckpt: Checkpoint) -> TrainConfig:
    try:
        return TrainConfig.from_json(ckpt.info.train_config)
    except (KeyError, TypeError, AttributeError, ValueError, ConfigError):
        raise CheckpointError(f"{ckpt.path}: holds no usable training schedule; it cannot be resumed") from None


def check_same_corpus(ckpt: Checkpoint, corpus: Corpus) -> None:
    """A resumed run must read the very bytes it was trained on (and so the same vocab)."""
    stored = ckpt.info.corpus
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


def init_from_config(options: TrainOptions, ckpt: Checkpoint) -> ModelConfig:
    """The fine-tuned model's config: the checkpoint's shape; only dropout may be set anew."""
    asked = given(options)
    refused = [
        f"{flag(k)} {shown(k, asked[k])} (the checkpoint has {getattr(ckpt.config, k)})"
        for k in MODEL_SHAPE
        if k in asked and asked[k] != getattr(ckpt.config, k)
    ]
    if refused:
        raise ConfigError(f"--init-from: {'; '.join(refused)}: the model shape comes from the checkpoint")
    if "dropout" in asked:
        return dataclasses.replace(ckpt.config, dropout=asked["dropout"])
    return ckpt.config
