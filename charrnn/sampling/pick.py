"""Choosing the next character: a pure function of (logits, settings, one uniform number per stream).

temperature 0 is argmax; top-k and top-p trim the distribution; the pick is the inverse CDF at
the uniform. The numpy and torch versions take the same steps in the same order, so a seed gives
the same text whichever computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charrnn.errors import ConfigError


@dataclass(frozen=True)
class SampleSettings:
    """How to pick each next character."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also rejects NaN
            raise ConfigError(f"--temp must be 0 (greedy) or positive, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")


def pick(logits: torch.Tensor, settings: SampleSettings, uniforms: torch.Tensor) -> torch.Tensor:
    """Next ids [N] from logits [N, V] and one uniform number in [0, 1) per row [N].

    CPU logits are picked in numpy (`pick_numpy`): a dozen small torch operations per character
    cost more than the step's arithmetic for one stream. Elsewhere the logits stay on their device.
    """
    if logits.device.type == "cpu":
        return torch.from_numpy(pick_numpy(logits.detach().float().numpy(), settings, uniforms.float().numpy()))
    return pick_torch(logits, settings, uniforms)


def pick_torch(logits: torch.Tensor, settings: SampleSettings, uniforms: torch.Tensor) -> torch.Tensor:
    """`pick` in torch, for logits on a GPU; the same steps as `pick_numpy`, in the same order."""
    if settings.temperature < torch.finfo(torch.float32).tiny:  # 0, or too small for fp32: greedy
        return logits.argmax(dim=-1)
    logits = logits.float()
    # Shift the best logit to 0 before scaling: a tiny temperature then gives 0 and -inf (greedy),
    # never inf - inf = NaN.
    temperature = min(settings.temperature, torch.finfo(torch.float32).max)  # beyond fp32 (inf too): uniform
    scaled = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if settings.top_k is not None and settings.top_k < scaled.size(-1):
        kth = torch.topk(scaled, settings.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    weights = scaled.exp()  # unnormalised: the pick scales the uniform by the total instead
    if settings.top_p is not None and settings.top_p < 1.0:
        probs = weights / weights.sum(dim=-1, keepdim=True)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly above each entry
        cut = before >= settings.top_p
        cut[:, 0] = False  # the likeliest character always stays, however small top_p is
        weights = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(cut, 0.0))
    cdf = weights.cumsum(dim=-1)
    total = cdf[:, -1:]
    # Strictly below the total, so the first cdf entry above it exists and has positive weight.
    target = torch.minimum(uniforms.to(cdf).view(-1, 1) * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).view(-1)


def pick_numpy(logits: np.ndarray, settings: SampleSettings, uniforms: np.ndarray) -> np.ndarray:
    """`pick` in numpy, for logits on the CPU; the same steps as `pick_torch`, in the same order."""
    fp32 = np.finfo(np.float32)
    if settings.temperature < float(fp32.tiny):
        return logits.argmax(axis=-1)
    scaled = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):  # a tiny temperature sends the others to -inf: the greedy limit, as in torch
        scaled /= np.float32(min(settings.temperature, float(fp32.max)))  # a huge one: uniform
    vocab = scaled.shape[-1]
    if settings.top_k is not None and settings.top_k < vocab:
        kth = np.partition(scaled, vocab - settings.top_k, axis=-1)[:, vocab - settings.top_k, None]
        scaled[scaled < kth] = -np.inf
    weights = np.exp(scaled, out=scaled)
    if settings.top_p is not None and settings.top_p < 1.0:
        probs = weights / weights.sum(axis=-1, keepdims=True)
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        cut = sorted_probs.cumsum(axis=-1) - sorted_probs >= np.float32(settings.top_p)
        cut[:, 0] = False
        sorted_probs[cut] = 0.0
        weights = np.zeros_like(probs)
        np.put_along_axis(weights, order, sorted_probs, axis=-1)
    cdf = weights.cumsum(axis=-1)
    total = cdf[:, -1:]
    target = np.minimum(uniforms.reshape(-1, 1) * total, np.nextafter(total, np.float32(0)))
    return (cdf <= target).sum(axis=-1)  # == searchsorted(cdf, target, right=True), row by row


def choose(logits: torch.Tensor, settings: SampleSettings, generator: torch.Generator) -> torch.Tensor:
    """Next ids [N] from logits [N, V], drawing the uniforms from `generator`."""
    uniforms = torch.rand(logits.size(0), generator=generator, device=generator.device)
    return pick(logits, settings, uniforms)
