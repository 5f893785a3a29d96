"""Bits of surprise per character and the model's top-k guesses, scored exactly as `charrnn eval` scores.

The pass is `evaluate_ids`'s (`chunked_pass`): the same chunks, start states checked against one
sequential pass, so the mean here equals `eval`'s loss (to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.evaluate import chunked_pass
from charrnn.model import CharRNN

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


def score(model: CharRNN, ids: np.ndarray, device: torch.device, top_k: int = 5) -> Surprisal:
    """Per-prediction loss and top-k guesses of `ids` under `model`, from `chunked_pass` (eval's pass)."""
    n_pred = int(ids.size) - 1
    k = max(1, min(top_k, model.config.vocab_size))
    nats = np.zeros(max(0, n_pred), dtype=np.float32)
    top_ids = np.zeros((max(0, n_pred), k), dtype=np.int32)
    top_probs = np.zeros((max(0, n_pred), k), dtype=np.float32)
    if n_pred < 1:
        return Surprisal(nats, top_ids, top_probs)

    def keep(positions: np.ndarray, live: np.ndarray, logits: torch.Tensor, losses: torch.Tensor) -> None:
        probs, guesses = F.softmax(logits.float(), dim=-1).topk(k, dim=-1)
        where = positions[live]  # prediction index = input position; a rescored chunk overwrites its own
        nats[where] = losses.cpu().numpy()[live]
        top_ids[where] = guesses.cpu().numpy()[live]
        top_probs[where] = probs.cpu().numpy()[live]

    chunked_pass(model, ids, device, visit=keep)
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
