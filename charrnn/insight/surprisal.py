"""Bits of surprise per character and the model's top-k guesses, scored exactly as `charrnn eval` scores.

The layout is `evaluate_ids`'s: the predictions ids[i] -> ids[i+1] are cut into the same
contiguous chunks with the same warm-up, so the mean here equals `eval`'s loss (to float
rounding); for a text under 4096 characters both are one sequential pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.evaluate import BURN_IN, WINDOW, stream_layout
from charrnn.model import CharRNN, detach_state

LN2 = math.log(2)


@dataclass(frozen=True)
class Surprisal:
    """Prediction i scores character i+1: `nats[i]`, and the top-k guesses for it (ids, probabilities)."""

    nats: np.ndarray  # float32 [n-1]
    top_ids: np.ndarray  # int32 [n-1, k]
    top_probs: np.ndarray  # float32 [n-1, k]

    @property
    def bits(self) -> np.ndarray:
        return self.nats / LN2

    @property
    def chars(self) -> int:
        return int(self.nats.size)

    @property
    def mean_nats(self) -> float:
        return float(self.nats.sum(dtype=np.float64)) / max(1, self.chars)

    @property
    def mean_bits(self) -> float:
        return self.mean_nats / LN2


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the text whose mean surprise is among the highest."""

    start: int
    end: int
    mean_bits: float


@torch.no_grad()
def score(model: CharRNN, ids: np.ndarray, device: torch.device, top_k: int = 5) -> Surprisal:
    """Per-prediction loss and top-k guesses of `ids` under `model` (evaluate_ids's layout)."""
    n_pred = int(ids.size) - 1
    k = max(1, min(top_k, model.config.vocab_size))
    nats = np.zeros(max(0, n_pred), dtype=np.float32)
    top_ids = np.zeros((max(0, n_pred), k), dtype=np.int32)
    top_probs = np.zeros((max(0, n_pred), k), dtype=np.float32)
    if n_pred < 1:
        return Surprisal(nats, top_ids, top_probs)
    num_streams, chunk = stream_layout(n_pred, None)
    starts = np.arange(num_streams, dtype=np.int64) * chunk
    warm = np.minimum(BURN_IN, starts)
    begins = starts - warm
    lengths = np.minimum(chunk, n_pred - starts) + warm
    width = int(lengths.max(initial=0))
    was_training = model.training
    model.eval()
    state = None
    for pos in range(0, width, WINDOW):
        cols = np.arange(pos, min(pos + WINDOW, width), dtype=np.int64)
        live = cols[None, :] < lengths[:, None]
        index = np.where(live, begins[:, None] + cols[None, :], 0)
        x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
        y = torch.from_numpy(np.asarray(ids[index + 1], dtype=np.int64)).to(device)
        logits, state = model(x, state)
        logp = F.log_softmax(logits.float(), dim=-1)
        loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        probs, guesses = logp.exp().topk(k, dim=-1)
        scored = live & (cols[None, :] >= warm[:, None])
        where = index[scored]  # prediction index = input position
        nats[where] = loss.cpu().numpy()[scored]
        top_ids[where] = guesses.cpu().numpy()[scored]
        top_probs[where] = probs.cpu().numpy()[scored]
        state = detach_state(state)
    model.train(was_training)
    return Surprisal(nats, top_ids, top_probs)


def worst_spans(bits: np.ndarray, width: int = 16, count: int = 3) -> list[Span]:
    """The `count` non-overlapping runs of `width` characters with the highest mean bits.

    `bits[i]` belongs to character i+1 of the text, so spans are in text positions.
    """
    n = int(bits.size)
    if n == 0:
        return []
    width = max(1, min(width, n))
    sums = np.convolve(bits.astype(np.float64), np.ones(width), mode="valid")
    taken = np.zeros(sums.size, dtype=bool)
    spans: list[Span] = []
    for start in np.argsort(-sums, kind="stable"):
        if len(spans) == count:
            break
        if taken[start]:
            continue
        spans.append(Span(int(start) + 1, int(start) + 1 + width, float(sums[start]) / width))
        taken[max(0, start - width + 1) : start + width] = True
    return sorted(spans, key=lambda span: -span.mean_bits)
