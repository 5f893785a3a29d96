"""What `charrnn info` shows about a checkpoint, as a dict (for --json) and as text."""

from __future__ import annotations

import math
from typing import Any

from charrnn.checkpoint import Checkpoint
from charrnn.model import count_parameters


def checkpoint_summary(ckpt: Checkpoint) -> dict[str, Any]:
    meta = ckpt.meta
    best = meta.get("best_val_loss")
    return {
        "path": ckpt.path,
        "kind": meta.get("kind"),
        "model": ckpt.config.to_dict(),
        "parameters": count_parameters(ckpt.config),
        "vocab_size": ckpt.vocab.size,
        "vocab": ckpt.vocab.chars,
        "step": meta.get("step"),
        "epoch": meta.get("epoch"),
        "elapsed_s": meta.get("elapsed_s"),
        "best_val_loss": best,
        "best_val_bpc": best / math.log(2) if best is not None else None,
        "best_step": meta.get("best_step"),
        "train_config": meta.get("train_config"),
        "corpus": meta.get("corpus"),
        "command": meta.get("command"),
        "versions": meta.get("versions"),
        "created": meta.get("created"),
    }


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
        f"trained     {summary['step']} steps, epoch {summary['epoch']}, {summary['elapsed_s'] or 0:.0f} s",
        "best val    "
        + (
            f"{best:.4f} nats/char, {summary['best_val_bpc']:.4f} bits/char at step {summary['best_step']}"
            if best is not None
            else "n/a"
        ),
    ]
    if train:
        lines.append(
            f"schedule    batch {train.get('batch_size')} x {train.get('seq_len')}, lr {train.get('lr')}, "
            f"dtype {train.get('dtype')}, seed {train.get('seed')}"
        )
    if corpus:
        lines.append(f"corpus      {', '.join(corpus.get('sources', []))} ({corpus.get('chars', 0):,} chars)")
    if summary.get("command"):
        lines.append(f"command     {summary['command']}")
    if summary.get("created"):
        lines.append(f"created     {summary['created']}")
    return "\n".join(lines)
