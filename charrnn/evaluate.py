"""Loss of a text under a model: full pass, state carried, in nats, bits per char and perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.device import autocast
from charrnn.errors import InputError
from charrnn.model import CharRNN, detach_state

MIN_CHARS_PER_STREAM = 2048
MAX_STREAMS = 64
BURN_IN = 256
WINDOW = 512


@dataclass(frozen=True)
class EvalResult:
    """Mean next-character loss over `chars` predictions."""

    loss: float
    chars: int

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    def to_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity, "chars": self.chars}


def stream_layout(num_predictions: int, streams: int | None) -> tuple[int, int]:
    """(streams, chunk): how many parallel streams to score and how many predictions each scores."""
    if streams is None:
        streams = max(1, min(MAX_STREAMS, num_predictions // MIN_CHARS_PER_STREAM))
    streams = max(1, min(streams, num_predictions))
    return streams, math.ceil(num_predictions / streams)


@torch.no_grad()
def evaluate_ids(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    streams: int | None = None,
    burn_in: int = BURN_IN,
    shard: tuple[int, int] = (0, 1),
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """Score every prediction ids[i] -> ids[i+1] once, as one long pass would, but in parallel.

    The predictions are cut into S contiguous chunks scored side by side. Chunk s > 0 first
    reads the `burn_in` characters before it (unscored) so its state is warm, which makes the
    result match a single sequential pass closely while running S times fewer steps.

        inputs  ids[0 .. n-2], targets ids[1 .. n-1]
        chunk 0:            [scored.......]
        chunk 1:      [warm][scored.......]
        chunk 2:                    [warm][scored...]   (right-padded, mask 0)

    Under torchrun, `shard=(rank, ranks)` scores every ranks-th chunk from `rank` and `reduce`
    sums the loss over the ranks, so validation takes 1/ranks of the time on each.
    """
    n_pred = int(ids.size) - 1
    if n_pred < 1:  # a loss of nothing is not a number: refused rather than reported as NaN
        raise InputError("the text must have at least 2 characters (one prediction) to be scored")
    num_streams, chunk = stream_layout(n_pred, streams)
    rank, ranks = shard
    starts = [s * chunk for s in range(rank, num_streams, ranks)]
    warm = np.array([min(burn_in, start) for start in starts], dtype=np.int64)
    begins = np.array(starts, dtype=np.int64) - warm
    lengths = np.minimum(chunk, n_pred - np.array(starts, dtype=np.int64)) + warm
    width = int(lengths.max(initial=0))
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    state = None
    # Each window's columns are gathered from `ids` as they are needed (a memory map stays one), so
    # memory is streams x WINDOW, not three int64 copies of the whole text.
    for pos in range(0, width, WINDOW):
        cols = np.arange(pos, min(pos + WINDOW, width), dtype=np.int64)
        live = cols[None, :] < lengths[:, None]  # past a chunk's end: padding, never scored
        index = np.where(live, begins[:, None] + cols[None, :], 0)
        x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
        y = torch.from_numpy(np.asarray(ids[index + 1], dtype=np.int64)).to(device)
        scored = torch.from_numpy(live & (cols[None, :] >= warm[:, None])).to(device)
        with autocast(device, dtype):
            logits, state = model(x, state)
        losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        total += (losses * scored.reshape(-1)).sum(dtype=torch.float64)
        state = detach_state(state)
    model.train(was_training)
    if reduce is not None:
        total = reduce(total)
    return EvalResult(loss=float(total.item()) / n_pred, chars=n_pred)
