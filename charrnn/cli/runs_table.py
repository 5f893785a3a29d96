"""`charrnn runs`: one line per run directory, to find the best checkpoint at a glance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from charrnn.store.metrics import RunLog
from charrnn.store.runs import BEST

COLUMNS = ("run", "corpus", "chars", "model", "steps", "val bpc", "date")


def run_row(run: RunLog, root: Path) -> dict[str, Any]:
    """The facts shown for one run (also the --json output)."""
    meta, config, info = run.meta, run.config, run.info
    corpus = (info.corpus if info else None) or config.get("corpus") or {}
    model = meta.get("model_config") or config.get("model_config") or {}
    sources = corpus.get("sources") or []
    best = run.path / BEST
    try:
        name = str(run.path.relative_to(root)) if run.path != root else run.path.name
    except ValueError:
        name = str(run.path)
    created = info.created if info else None
    if not created:
        stamp = max((p.stat().st_mtime for p in run.path.iterdir() if p.is_file()), default=0.0)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp)) if stamp else None
    return {
        "run": name,
        "path": str(run.path),
        "corpus": sources,
        "chars": corpus.get("chars"),
        "model": model,
        "steps": run.steps,
        "best_val_loss": run.best_val_loss,
        "best_val_bpc": run.best_val_bpc,
        "best_checkpoint": str(best) if best.is_file() else None,
        "created": created,
        "command": (info.command if info else None) or config.get("command"),
    }


def describe_corpus(sources: list[str]) -> str:
    if not sources:
        return "?"
    first = "stdin" if sources[0] == "-" else Path(sources[0]).name
    return first if len(sources) == 1 else f"{first} +{len(sources) - 1}"


def describe_model(model: dict[str, Any]) -> str:
    if not model:
        return "?"
    return f"{model.get('num_layers')}x{model.get('hidden_size')} {str(model.get('cell', '')).upper()}"


def human_count(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def cells(row: dict[str, Any]) -> list[str]:
    bpc = row["best_val_bpc"]
    return [
        row["run"],
        describe_corpus(row["corpus"]),
        human_count(row["chars"]),
        describe_model(row["model"]),
        "?" if row["steps"] is None else f"{row['steps']:,}",
        "-" if bpc is None else f"{bpc:.3f}",
        (row["created"] or "?")[:16].replace("T", " "),
    ]


def sort_rows(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Newest first (`date`), or best validation bits/char first (`bpc`, runs without one last)."""
    if by == "bpc":
        return sorted(rows, key=lambda r: (r["best_val_bpc"] is None, r["best_val_bpc"] or 0.0))
    return sorted(rows, key=lambda r: r["created"] or "", reverse=True)


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Plain aligned columns (easy to read, grep and cut); numbers right-aligned."""
    table = [list(COLUMNS)] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    right = {2, 4, 5}
    out = []
    for line in table:
        parts = [(c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(parts).rstrip())
    return out
