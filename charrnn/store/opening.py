"""One call from "what the user named" to a model ready to run: path or run directory or nothing
(the newest run), checked, loaded onto the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.device import resolve_device
from charrnn.model import CharRNN
from charrnn.store.checkpoint import Checkpoint, load_checkpoint, load_model
from charrnn.store.runs import resolve_checkpoint
from charrnn.vocab import Vocab


@dataclass(frozen=True)
class OpenModel:
    checkpoint: Checkpoint
    model: CharRNN  # in eval mode, on `device`
    device: torch.device

    @property
    def vocab(self) -> Vocab:
        return self.checkpoint.vocab


def open_model(path: str | Path | None = None, device: str = "cpu") -> OpenModel:
    """The checkpoint `path` names (a file, a run directory's best, or the newest run's best), on `device`."""
    target = resolve_device(device)
    ckpt = load_checkpoint(resolve_checkpoint(None if path is None else str(path)))
    return OpenModel(ckpt, load_model(ckpt, target), target)
