"""Choosing the next character: a pure function of (logits, settings, what the row has seen, one uniform).

The steps, in order, all in float32 numpy (so a web page or a torch-free process can repeat them):

    1. bias      logits += logit_bias; --ban and a bias of -100 set -inf
    2. repeat    a logit of a character seen in the window: / penalty when positive, * penalty when not
    3. presence  logits -= presence * seen + frequency * count          (OpenAI's formula, over the window)
    4. masks     -inf where --no-repeat-ngram or --match forbid the character
    5. greedy    temperature 0: the first likeliest character; done
    6. scale     (logits - max) / temperature
    7. top-k, top-p, min-p   trim (min-p against the likeliest, after the temperature, as vLLM does)
    8. pick      the inverse CDF of the remaining weights at the row's uniform (charrnn.sampling.rng)

Steps 1-4 are `adjust`; beam search ranks by the log-softmax of its result. Steps 5-8 are `choose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import ConfigError
from charrnn.sampling.controls import MAX_BIAS, SampleSettings, named

if TYPE_CHECKING:
    from charrnn.sampling.constrain import Constraint

FP32 = np.finfo(np.float32)
TINY_TEMPERATURE = 1e-20  # below this a scaled logit may overflow to -inf (the greedy limit)


@dataclass(frozen=True, eq=False)
class Compiled:
    """Settings bound to one vocabulary: the bias row and the regex's automaton, built once per request."""

    settings: SampleSettings
    chars: tuple[str, ...]
    bias: np.ndarray | None  # [V] float32, -inf where banned; None when nothing is biased
    constraint: Constraint | None

    @property
    def masks(self) -> bool:
        """Whether rows may forbid characters (n-grams, a regex): their masks are asked for each step."""
        return self.constraint is not None or self.settings.no_repeat_ngram > 0


def compile_settings(settings: SampleSettings, chars: Sequence[str], style: str = "flag") -> Compiled:
    """Check the settings against the vocabulary (ConfigError naming the control as the user wrote it)."""
    index = {c: i for i, c in enumerate(chars)}
    bias = None
    if settings.bias or settings.ban:
        bias = np.zeros(len(chars), dtype=np.float32)
        for key, amount in settings.bias:
            if isinstance(key, int):
                if not 0 <= key < len(chars):
                    last = len(chars) - 1
                    raise ConfigError(f"{named('bias', style)}: token id {key} is outside the vocabulary (0..{last})")
                target = key
            elif key in index:
                target = index[key]
            else:
                raise ConfigError(f"{named('bias', style)}: the model has no character {key!r}")
            bias[target] = -np.inf if amount <= -MAX_BIAS else amount
        for char in settings.ban:  # characters the model never makes need no ban
            if char in index:
                bias[index[char]] = -np.inf
        if not np.isfinite(bias).any():
            raise ConfigError(f"{named('ban', style)} leaves no character to generate")
    constraint = None
    if settings.match is not None:
        from charrnn.sampling.constrain import Constraint

        constraint = Constraint.compile(settings.match, chars, named("match", style))
    return Compiled(settings, tuple(chars), bias, constraint)


def adjust(logits: np.ndarray, compiled: Compiled, counts: np.ndarray | None, allowed: np.ndarray | None) -> np.ndarray:
    """Steps 1-4 on float32 logits [N, V], in place: `counts` [N, V] are the window's character counts
    (None when no penalty is set), `allowed` [N, V] False where a mask forbids (None: no mask)."""
    settings = compiled.settings
    if compiled.bias is not None:
        logits += compiled.bias
    if counts is not None:
        seen = counts > 0
        penalty = np.float32(settings.repetition_penalty)
        if penalty != 1.0:
            hit = np.where(logits > 0, logits / penalty, logits * penalty)
            np.copyto(logits, hit, where=seen)
        if settings.presence_penalty or settings.frequency_penalty:
            logits -= np.float32(settings.presence_penalty) * seen + np.float32(settings.frequency_penalty) * counts
    if allowed is not None:
        logits[~allowed] = -np.inf
    return logits


def choose(logits: np.ndarray, settings: SampleSettings, uniforms: np.ndarray) -> np.ndarray:
    """Steps 5-8: next ids [N] from adjusted logits [N, V] (every row has a finite entry) and one
    uniform in [0, 1) per row."""
    if settings.temperature < float(FP32.tiny):  # 0, or too small for fp32: greedy
        return logits.argmax(axis=-1)
    scaled = logits - logits.max(axis=-1, keepdims=True)
    temperature = np.float32(min(settings.temperature, float(FP32.max)))  # beyond fp32 (inf too): uniform
    if temperature < TINY_TEMPERATURE:
        with np.errstate(over="ignore"):  # a tiny temperature sends the others to -inf: the greedy limit
            scaled /= temperature
    else:
        scaled /= temperature
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
        cut[:, 0] = False  # the likeliest character always stays, however small top_p is
        sorted_probs[cut] = 0.0
        weights = np.zeros_like(probs)
        np.put_along_axis(weights, order, sorted_probs, axis=-1)
    if settings.min_p is not None and settings.min_p > 0.0:
        floor = weights.max(axis=-1, keepdims=True) * np.float32(settings.min_p)
        weights[weights < floor] = 0.0
    cdf = weights.cumsum(axis=-1)
    total = cdf[:, -1:]
    # Strictly below the total, so the first cdf entry above it exists and has positive weight.
    target = np.minimum(uniforms.reshape(-1, 1) * total, np.nextafter(total, np.float32(0)))
    return (cdf <= target).sum(axis=-1)  # == searchsorted(cdf, target, right=True), row by row


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p [N, V] in float32 (-inf stays -inf)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
