"""Run directories: where a run writes, and which checkpoint a command means when none is given."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from charrnn.errors import CheckpointError, ConfigError, TrainingError
from charrnn.store.lock import RunBusy, RunLock
from charrnn.store.meta import SUFFIX

DEFAULT_ROOT = Path("checkpoints")
BEST = f"best{SUFFIX}"
LAST = f"last{SUFFIX}"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
TEMP_FILE = re.compile(r"^\..+\.tmp-(\d+)$")  # what files.atomic_write leaves if killed mid-write


def run_name(sources: tuple[str, ...]) -> str:
    """A run's default name: the first corpus file's stem (`stdin` for -), made path-safe."""
    first = sources[0] if sources else "corpus"
    stem = "stdin" if first == "-" else Path(first).stem or "corpus"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "corpus"


def holds_run(directory: Path) -> bool:
    return (directory / BEST).exists() or (directory / LAST).exists()


def claim_run_dir(out: str | None, sources: tuple[str, ...], root: Path = DEFAULT_ROOT) -> tuple[Path, RunLock]:
    """A new run directory, locked for this process: `out` if given (it must hold no run and no
    other trainer), else the first of root/<name>, root/<name>-2, ... that holds neither."""
    if out is not None:
        directory = Path(out)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a directory")
        make_dir(directory)
        try:
            lock = acquire(directory)
        except RunBusy as busy:
            raise ConfigError(f"--out {out}: {busy}; wait for it to finish or pick another --out") from None
        if holds_run(directory):
            lock.release()
            raise ConfigError(
                f"--out {out}: already holds a run; use --resume {out} to continue it, or pick another --out"
            )
        return directory, lock
    name = run_name(sources)
    for index in itertools.count(1):
        directory = root / (name if index == 1 else f"{name}-{index}")
        if holds_run(directory):
            continue
        make_dir(directory)
        try:
            lock = acquire(directory)
        except RunBusy:
            continue  # another run just claimed it: take the next name
        if not holds_run(directory):
            return directory, lock
        lock.release()
    raise AssertionError("unreachable")


def acquire(directory: Path) -> RunLock:
    try:
        return RunLock.acquire(directory)
    except OSError as exc:
        raise TrainingError(f"{directory}: cannot lock the run directory ({exc.strerror or exc})") from None


def lock_existing_run(run_dir: Path) -> RunLock:
    """The lock of a run about to be resumed; ConfigError while another process trains it."""
    try:
        return RunLock.acquire(run_dir)
    except RunBusy as busy:
        raise ConfigError(f"--resume {run_dir}: {busy}; wait for it to stop first") from None
    except OSError as exc:
        raise TrainingError(f"--resume {run_dir}: cannot lock the run directory ({exc.strerror or exc})") from None


def make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{directory}: cannot create the run directory ({exc.strerror or exc})") from None


def newest_run(root: Path = DEFAULT_ROOT, checkpoint: str = BEST) -> Path:
    """The run directory under `root` whose `checkpoint` (best, or last for --resume) was written last."""
    candidates = [p for p in root.glob(f"*/{checkpoint}") if p.is_file()] if root.is_dir() else []
    if not candidates:
        raise CheckpointError(
            f"no run with a {checkpoint} under {root}/; train one with `charrnn train FILE` or name a run directory"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime).parent


def newest_checkpoint(root: Path = DEFAULT_ROOT) -> Path:
    """The best checkpoint of the most recently written run under `root` (what `sample` uses by default)."""
    return newest_run(root, BEST) / BEST


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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(directory: Path) -> list[Path]:
    """Remove temp files left by a writer that was killed mid-save (its process is gone)."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = TEMP_FILE.match(path.name)
        if match and path.is_file() and (int(match.group(1)) == os.getpid() or not pid_alive(int(match.group(1)))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def resume_target(path: str, root: Path = DEFAULT_ROOT) -> tuple[Path, Path]:
    """(run directory, checkpoint) for `--resume PATH`: a run directory continues from its last.

    An empty PATH means the newest run under `root`.
    """
    target = Path(path) if path else newest_run(root, LAST)
    if target.is_dir():
        if (target / LAST).is_file():
            return target, target / LAST
        raise CheckpointError(f"--resume {target}: directory holds no {LAST}; nothing to resume")
    if not target.exists():
        raise CheckpointError(f"--resume {path}: not found; pass a run directory or a checkpoint file")
    return target.parent, target
