"""The models a server holds: loaded once at start, each named by its run; requests choose only among them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import ConfigError
from charrnn.serve.limits import Limits
from charrnn.serve.scheduler import Scheduler
from charrnn.store.opening import OpenModel, open_model
from charrnn.store.runs import BEST, resolve_checkpoint


@dataclass(frozen=True)
class Served:
    """One loaded model and the batch that runs it."""

    name: str
    opened: OpenModel
    scheduler: Scheduler
    created: int  # the checkpoint file's mtime, for GET /v1/models


def model_name(checkpoint: Path) -> str:
    """The run directory's name; `run/last` style for a checkpoint other than the run's best."""
    run = display(checkpoint.resolve().parent.name) or "model"
    return run if checkpoint.name == BEST else f"{run}/{display(checkpoint.stem)}"


def display(name: str) -> str:
    """A file name as text a client can send and JSON can carry: bytes that are not UTF-8 (which Python
    keeps as lone surrogates) and control characters become U+FFFD, the replacement character."""
    text = os.fsencode(name).decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def load_models(paths: Sequence[str | None], device: str, limits: Limits, threads: int) -> dict[str, Served]:
    """Open each checkpoint (None: the newest run's best, as `charrnn sample` picks it) and start its batch."""
    served: dict[str, Served] = {}
    for path in paths or [None]:
        file = resolve_checkpoint(path)
        name = model_name(file)
        if name in served:
            raise ConfigError(f"two checkpoints would both be served as {name!r}; give each run its own directory")
        opened = open_model(file, device)
        scheduler = Scheduler(opened.model, opened.vocab, opened.device, limits, threads)
        served[name] = Served(name, opened, scheduler, int(file.stat().st_mtime))
    for model in served.values():
        model.scheduler.start()
    return served


def close_models(served: dict[str, Served]) -> None:
    for model in served.values():
        model.scheduler.close()
