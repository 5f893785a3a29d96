"""How far back a model looks: bits/char when it may see only the last k characters, against the
state carried over the whole text; the gradient of log p(x_t) with respect to the input k steps
back; how often its gates saturate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.errors import InputError
from charrnn.insight.neurons import GateStat, record
from charrnn.insight.surprisal import score
from charrnn.model import CharRNN

LN2 = math.log(2)
MAX_CONTEXT = 1024
GATE_CHARS = 200_000  # gate statistics read at most this many characters


@dataclass(frozen=True)
class ContextCurve:
    """bits[k] for each context k (0 = no input at all), the carried-state bits, on `positions`."""

    contexts: list[int]
    bits: list[float]
    full_bits: float
    positions: int

    def gain_context(self, share: float = 0.9) -> int | None:
        """The shortest context that gives `share` of the gain from no context to the full state."""
        base = self.bits[0]
        gain = base - self.full_bits
        if gain <= 0:
            return None
        for k, b in zip(self.contexts, self.bits, strict=True):
            if base - b >= share * gain:
                return k
        return None


@dataclass(frozen=True)
class GradientCurve:
    """Mean norm of d log p(x_t) / d embedding(x_{t-k}) for k = 1 .. len(norms)."""

    norms: list[float]
    positions: int


@dataclass(frozen=True)
class MemoryReport:
    context: ContextCurve
    gradient: GradientCurve
    gates: list[GateStat] = field(default_factory=list)


def contexts_for(n: int) -> list[int]:
    """0, 1, 2, 4 ... up to 1024 or what the text allows (each scored position needs k characters before it)."""
    out = [0]
    k = 1
    while k <= min(MAX_CONTEXT, n - 2):
        out.append(k)
        k *= 2
    return out


def sample_positions(n: int, start: int, count: int, seed: int) -> np.ndarray:
    """`count` target positions in [start, n), evenly spread with a seeded jitter."""
    if n - start < 1:
        raise InputError("the text is too short to sample positions from")
    count = min(count, n - start)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(start, n), size=count, replace=False))


@torch.no_grad()
def context_curve(
    model: CharRNN, ids: np.ndarray, device: torch.device, positions: int = 128, seed: int = 0, batch: int = 64
) -> ContextCurve:
    """For each k: reset the state k characters before each sampled position, read them, score it."""
    n = int(ids.size)
    ks = contexts_for(n)
    targets = sample_positions(n, ks[-1], positions, seed)
    model.eval()
    full = score(model, ids, device, top_k=1).bits[targets - 1]  # prediction t-1 scores character t
    curve: list[float] = []
    for k in ks:
        if k == 0:  # nothing read: the head on a zero state
            zero = torch.zeros(1, model.config.hidden_size, device=device)
            prior = F.log_softmax(model.head(zero).float(), dim=-1)[0].cpu().numpy()
            curve.append(float(-prior[np.asarray(ids[targets], dtype=np.int64)].mean() / LN2))
            continue
        total = 0.0
        for lo in range(0, targets.size, batch):
            at = targets[lo : lo + batch]
            index = at[:, None] - k + np.arange(k)[None, :]
            x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
            logits, _ = model(x)
            logp = F.log_softmax(logits[:, -1].float(), dim=-1)
            y = torch.from_numpy(np.asarray(ids[at], dtype=np.int64)).to(device)
            total += float(-logp.gather(1, y[:, None]).sum())
        curve.append(total / targets.size / LN2)
    return ContextCurve(ks, curve, float(full.mean()), int(targets.size))


def gradient_curve(
    model: CharRNN, ids: np.ndarray, device: torch.device, span: int = 256, positions: int = 32, seed: int = 1
) -> GradientCurve:
    """Mean over sampled t of |d log p(x_t) / d e_{t-k}|, e the input embedding, k = 1 .. span."""
    n = int(ids.size)
    span = max(1, min(span, n - 1))
    targets = sample_positions(n, span, positions, seed)
    model.eval()
    index = targets[:, None] - span + np.arange(span)[None, :]
    x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
    y = torch.from_numpy(np.asarray(ids[targets], dtype=np.int64)).to(device)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        embedded = model.embed(x).detach().requires_grad_(True)
        out, _ = model.rnn(embedded)
        logp = F.log_softmax(model.head(out[:, -1]).float(), dim=-1)
        logp.gather(1, y[:, None]).sum().backward()
    assert embedded.grad is not None
    norms = embedded.grad.norm(dim=-1).mean(0).flip(0)  # [span]: k = 1 first
    return GradientCurve([float(v) for v in norms.cpu()], int(targets.size))


def memory_report(
    model: CharRNN, ids: np.ndarray, device: torch.device, positions: int = 128, span: int = 256
) -> MemoryReport:
    """The three views; gate statistics stream over the first GATE_CHARS characters (none for an RNN)."""
    if ids.size < 16:
        raise InputError(f"the text has {ids.size} characters; the memory view needs at least 16")
    context = context_curve(model, ids, device, positions)
    gradient = gradient_curve(model, ids, device, span)
    gated = model.config.cell != "rnn"
    gates = record(model, ids[:GATE_CHARS], device, gates=True).gates if gated else []
    return MemoryReport(context, gradient, gates)
