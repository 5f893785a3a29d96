"""Run telemetry: the stable `metrics.jsonl` row schema, and reading runs back for plots and tables.

Every row of `metrics.jsonl` carries the same keys, whatever its event, so that `jq`, pandas or a
spreadsheet can read the file without special cases:

    event        "train" (a log line) or "val" (a validation)
    step epoch elapsed_s chars_per_s lr
    train_loss train_bpc      mean training loss since the previous log row (nats, bits/char)
    val_loss val_bpc          validation loss (val rows)
    bpc                       the row's own bits/char: train_bpc on train rows, val_bpc on val rows
    grad_norm                 gradient norm before clipping, at the last step (train rows)
    nonfinite                 names of the keys whose value was NaN or infinite (written as null)

Keys that do not apply to an event are null. JSON has no NaN: a diverged loss is written as null
and named in `nonfinite`, so the file stays valid JSON for every reader.

Reading is light (no torch): `charrnn runs` and `charrnn plot` read only the JSON files and the
checkpoint headers, never the weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charrnn.errors import InputError
from charrnn.store.meta import CheckpointMeta, read_file_meta
from charrnn.store.runs import BEST, CONFIG, LAST, METRICS

METRICS_FILE, CONFIG_FILE = METRICS, CONFIG  # the run directory's files, as store.runs names them
STABLE_KEYS = (
    "event",
    "step",
    "epoch",
    "elapsed_s",
    "chars_per_s",
    "lr",
    "train_loss",
    "train_bpc",
    "val_loss",
    "val_bpc",
    "bpc",
    "grad_norm",
)
# Values the loop always computes for an event: null there means it was NaN or infinite.
MEASURED = {"train": ("train_loss", "train_bpc", "grad_norm"), "val": ("val_loss", "val_bpc")}
LN2 = math.log(2)


def finite_or_none(value: Any) -> Any:
    """Floats that JSON can hold; NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every stable key present (null where it does not apply) and NaN flagged, not written.

    The loop may hand over NaN directly or already as None; both end up null and named in
    `nonfinite`, since a measured value the loop always computes is only missing when it was not finite.
    """
    event = row.get("event", "train")
    out: dict[str, Any] = {key: None for key in STABLE_KEYS}
    nonfinite = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    out.update({k: finite_or_none(v) for k, v in row.items()})
    out["event"] = event
    nonfinite += [k for k in MEASURED.get(event, ()) if k in row and row[k] is None and k not in nonfinite]
    out["bpc"] = out["train_bpc"] if event == "train" else out["val_bpc"]
    out["nonfinite"] = nonfinite
    return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, from its header alone, type-checked (store.meta).

    Fast (no weights read, no torch import) and meant for listings: the digest is not checked here;
    every command that uses the weights goes through `checkpoint.load_checkpoint`, which checks it.
    """
    return read_file_meta(path)[0]


@dataclass(frozen=True)
class Curve:
    """One series to draw: (x, y) points with a label."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


@dataclass(frozen=True)
class RunLog:
    """What a run directory says about itself, from config.json, metrics.jsonl and checkpoint headers."""

    path: Path
    rows: tuple[dict[str, Any], ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # a checkpoint's stored JSON ({} without one)
    info: CheckpointMeta | None = None  # ...and its typed view

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, event: str, x: str = "step") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """x values and losses (nats/char) of one event kind, skipping non-finite points."""
        key = "train_loss" if event == "train" else "val_loss"
        points = [
            (float(r[x]), float(r[key]))
            for r in self.rows
            if r.get("event") == event and isinstance(r.get(key), (int, float)) and isinstance(r.get(x), (int, float))
        ]
        return tuple(p[0] for p in points), tuple(p[1] for p in points)

    @property
    def steps(self) -> int | None:
        if self.info is not None or not self.rows:
            return None if self.info is None else self.info.step
        return max(int(r["step"]) for r in self.rows)

    @property
    def best_val_loss(self) -> float | None:
        best = None if self.info is None else self.info.best_val_loss
        if best is None:
            vals = self.series("val")[1]
            best = min(vals) if vals else None
        return best

    @property
    def best_val_bpc(self) -> float | None:
        best = self.best_val_loss
        return None if best is None else best / LN2


def find_checkpoint_files(directory: Path) -> list[Path]:
    return [directory / LAST, directory / BEST]


def read_run(path: str | Path) -> RunLog:
    """A run from its directory (or any file inside it, such as a checkpoint)."""
    target = Path(path)
    if target.is_file():
        target = target.parent
    if not target.is_dir():
        raise InputError(f"{path}: no such run directory; `charrnn runs` lists the runs under ./checkpoints")
    rows: tuple[dict[str, Any], ...] = ()
    if (target / METRICS_FILE).is_file():
        rows = tuple(read_metrics(target / METRICS_FILE))
    config: dict[str, Any] = {}
    if (target / CONFIG_FILE).is_file():
        try:
            loaded = json.loads((target / CONFIG_FILE).read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            config = {}
    meta: dict[str, Any] = {}
    info: CheckpointMeta | None = None
    for candidate in find_checkpoint_files(target):
        if candidate.is_file():
            try:
                meta, info = read_file_meta(candidate)
                break
            except InputError:
                continue
    if not rows and not config and info is None:
        raise InputError(f"{path}: not a charrnn run directory (no metrics.jsonl, config.json or checkpoint)")
    if not rows and info is not None:
        rows = tuple(r for r in info.history if isinstance(r.get("step"), int))
    return RunLog(path=target, rows=rows, config=config, meta=meta, info=info)


def find_runs(root: str | Path) -> list[RunLog]:
    """Every run directory at or below `root` (a directory holding config.json or a checkpoint)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{root}: no such directory; runs are written under ./checkpoints by `charrnn train`")
    markers = {CONFIG, METRICS, BEST, LAST}
    directories = sorted({p.parent for p in base.rglob("*") if p.name in markers and p.is_file()})
    runs = []
    for directory in directories:
        try:
            runs.append(read_run(directory))
        except InputError:
            continue
    return runs
