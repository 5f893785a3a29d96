"""Run directories: where a run writes, and which checkpoint a command means when none is given."""

from __future__ import annotations

import re
from pathlib import Path

from charrnn.checkpoint import SUFFIX
from charrnn.errors import CheckpointError, ConfigError

DEFAULT_ROOT = Path("checkpoints")
BEST = f"best{SUFFIX}"
LAST = f"last{SUFFIX}"
METRICS = "metrics.jsonl"
CONFIG = "config.json"


def run_name(sources: tuple[str, ...]) -> str:
    """A run's default name: the first corpus file's stem (`stdin` for -), made path-safe."""
    first = sources[0] if sources else "corpus"
    stem = "stdin" if first == "-" else Path(first).stem or "corpus"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "corpus"


def holds_run(directory: Path) -> bool:
    return (directory / BEST).exists() or (directory / LAST).exists()


def new_run_dir(out: str | None, sources: tuple[str, ...], root: Path = DEFAULT_ROOT) -> Path:
    """An empty run directory: `out` if given (it must not hold a run), else root/<name>[-N]."""
    if out is not None:
        directory = Path(out)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a directory")
        if holds_run(directory):
            raise ConfigError(
                f"--out {out}: already holds a run; use --resume {out} to continue it, or pick another --out"
            )
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    name = run_name(sources)
    directory = root / name
    index = 2
    while holds_run(directory):
        directory = root / f"{name}-{index}"
        index += 1
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def newest_checkpoint(root: Path = DEFAULT_ROOT) -> Path:
    """The best checkpoint of the most recently written run under `root`."""
    candidates = [p for p in root.glob(f"*/{BEST}") if p.is_file()] if root.is_dir() else []
    if not candidates:
        raise CheckpointError(f"no checkpoint found under {root}/; train one with `charrnn train FILE` or pass -c CKPT")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def resolve_checkpoint(path: str | None, root: Path = DEFAULT_ROOT) -> Path:
    """A checkpoint file from a file path, a run directory (its best), or nothing (newest run)."""
    if path is None:
        return newest_checkpoint(root)
    target = Path(path)
    if target.is_dir():
        for name in (BEST, LAST):
            if (target / name).is_file():
                return target / name
        raise CheckpointError(f"{path}: directory holds no {BEST} or {LAST}; pass a checkpoint file")
    return target
