"""What `charrnn info` shows about a checkpoint, as a dict (for --json) and as text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.text import Text

from charrnn.cli.curve import loss_lines, render
from charrnn.durations import format_duration
from charrnn.model import count_parameters
from charrnn.store.checkpoint import Checkpoint
from charrnn.store.metrics import METRICS_FILE, RunLog, read_metrics


def checkpoint_summary(ckpt: Checkpoint) -> dict[str, Any]:
    info = ckpt.info
    best = info.best_val_loss
    epochs = epochs_at(ckpt)
    return {
        "path": ckpt.path,
        "kind": info.kind or None,
        "model": ckpt.config.to_dict(),
        "parameters": count_parameters(ckpt.config),
        "vocab_size": ckpt.vocab.size,
        "vocab": ckpt.vocab.chars,
        "step": info.step,
        "epoch": info.epoch,
        "epochs": epochs if epochs is not None else info.epoch,
        "elapsed_s": info.elapsed_s,
        "best_val_loss": best,
        "best_val_bpc": best / math.log(2) if best is not None else None,
        "best_step": info.best_step,
        "train_config": info.train_config or None,
        "corpus": info.corpus or None,
        "command": info.command or None,
        "versions": info.versions or None,
        "created": info.created or None,
    }


def run_rows(ckpt: Checkpoint) -> tuple[dict[str, Any], ...]:
    """The metrics rows of the checkpoint's run (its metrics.jsonl), else the history stored inside it."""
    metrics = Path(ckpt.path).parent / METRICS_FILE
    rows = tuple(read_metrics(metrics)) if metrics.is_file() else ()
    return rows or tuple(r for r in ckpt.info.history if "step" in r)


def epochs_at(ckpt: Checkpoint) -> float | None:
    """Fractional epochs at the checkpoint's step (the checkpoint itself stores whole epochs only)."""
    step = ckpt.info.step
    for row in run_rows(ckpt):
        if row.get("step") == step and isinstance(row.get("epoch"), (int, float)):
            return float(row["epoch"])
    return None


def format_summary(summary: dict[str, Any]) -> str:
    model = summary["model"]
    train = summary.get("train_config") or {}
    corpus = summary.get("corpus") or {}
    best = summary["best_val_loss"]
    lines = [
        f"checkpoint  {summary['path']} ({summary['kind'] or 'unknown'})",
        f"model       {model['num_layers']}x{model['hidden_size']} {model['cell'].upper()}, "
        f"embed {model['embed_size']}, dropout {model['dropout']:g}",
        f"parameters  {summary['parameters']:,}",
        f"vocab       {summary['vocab_size']} characters: {summary['vocab'][:60]!r}"
        + ("..." if summary["vocab_size"] > 60 else ""),
        f"trained     {summary['step'] or 0:,} steps, {summary['epochs'] or 0:.2f} epochs, "
        f"{format_duration(summary['elapsed_s'] or 0)}",
        "best val    "
        + (
            f"{best:.4f} nats/char, {summary['best_val_bpc']:.4f} bits/char at step {summary['best_step']}"
            if best is not None
            else "n/a"
        ),
    ]
    if train:
        lines.append(
            f"schedule    batch {train.get('batch_size')} x {train.get('seq_len')}, "
            f"{train.get('stream_groups', 1)} stream group(s), lr {train.get('lr')} "
            f"({train.get('decay', 'cosine')} decay), "
            f"dtype {train.get('dtype')}, seed {train.get('seed')}"
        )
    if corpus:
        lines.append(f"corpus      {', '.join(corpus.get('sources', []))} ({corpus.get('chars', 0):,} chars)")
    if summary.get("command"):
        lines.append(f"command     {summary['command']}")
    if summary.get("created"):
        lines.append(f"created     {summary['created']}")
    return "\n".join(lines)


def checkpoint_curve(ckpt: Checkpoint, width: int = 80, ascii_only: bool = False) -> list[Text]:
    """The loss curve of the run a checkpoint belongs to: its metrics.jsonl, else the stored history."""
    metrics = Path(ckpt.path).parent / METRICS_FILE
    rows = tuple(read_metrics(metrics)) if metrics.is_file() else ()
    if not rows:
        rows = tuple(r for r in ckpt.info.history if "step" in r)
    run = RunLog(path=Path(ckpt.path).parent, rows=rows)
    return render(
        loss_lines([("run", run.series("train"), run.series("val"))]), width=width, height=10, ascii_only=ascii_only
    )
