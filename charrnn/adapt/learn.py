"""Dynamic evaluation and prime adaptation: a copy of the model keeps learning from the text it reads.

Dynamic evaluation (Krause et al., 2017, "Dynamic Evaluation of Neural Sequence Models") scores a
text as one sequential stream cut into segments of `seq` predictions. Each segment is scored with
the current weights first, and only then used for one gradient step, so no character is ever
scored by weights that were trained on it:

    ids    [0 ........................................................ n-1]
    segs   [ seg 0 ][ seg 1 ][ seg 2 ] ... [ seg K ]    seq predictions each (the last may be shorter)
    seg k: loss_k = CE(model_k(seg k | state_k))        <- reported (sum over the segment)
           theta_{k+1} = theta_k - lr * g_k / rms(g_1..g_k)      g_k = grad of seg k's mean loss
           state_{k+1} = the state seg k ended in, detached (the graph stops at segment edges)

`adapt` uses the same step to fit a copy to a prime before sampling: `steps` segments, taken in
order through the prime and again from its start (state reset) when it runs out.

The step is RMS-normalised, as Krause et al.'s best rule, but with the gradient statistics taken
from the text itself as it is read (there is no training data at evaluation time), and without
their decay back towards the original weights (worth 0.003 nats/char on Tiny Shakespeare's
held-out text, for a second copy of the weights); see benchmarks/DYNAMIC.md.

Everything runs on a copy built with dropout 0 (its weights equal the loaded model's; the loaded
model is never changed), in fp32, with no randomness: the same text gives the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.adapt.settings import AdaptSettings
from charrnn.errors import ConfigError, InputError
from charrnn.evaluate import EvalResult
from charrnn.model import CharRNN, State, detach_state

RMS_BETA = 0.99
RMS_EPS = 1e-8

Progress = Callable[[int, int], None]  # (predictions done, predictions in all)


def learning_copy(model: CharRNN) -> CharRNN:
    """A copy with the same weights and no dropout, in training mode (cuDNN's recurrent backward
    needs it; without dropout the forward is the one eval mode computes)."""
    device = next(model.parameters()).device
    copy = CharRNN(replace(model.config, dropout=0.0)).to(device)
    copy.load_state_dict(model.state_dict())
    return copy.train()


class Learner:
    """RMS-normalised steps (RMSprop) on the copy's parameters, from the gradient its last backward left.

    Each weight's step is divided by the running root mean square of its own gradients (over the
    segments seen so far, bias-corrected), so rarely moved weights are not starved and the step
    size does not depend on the gradients' scale: it beat plain SGD at its best lr by 0.04 nats/char.
    """

    def __init__(self, model: CharRNN, settings: AdaptSettings) -> None:
        self.lr = settings.lr
        self.params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        self.mean_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.steps += 1
        torch._foreach_mul_(self.mean_sq, RMS_BETA)
        torch._foreach_addcmul_(self.mean_sq, grads, grads, value=1 - RMS_BETA)
        # g / (sqrt(ms / b) + eps) = sqrt(b) g / (sqrt(ms) + sqrt(b) eps), b = 1 - beta^t: one pass less
        root = math.sqrt(1 - RMS_BETA**self.steps)
        denom = torch._foreach_sqrt(self.mean_sq)
        torch._foreach_add_(denom, RMS_EPS * root)
        torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr * root)
        for p in self.params:
            p.grad = None


def segments(count: int, seq: int) -> Iterator[tuple[int, int]]:
    """(begin, end) of each segment of `seq` predictions over `count` predictions."""
    for begin in range(0, count, seq):
        yield begin, min(begin + seq, count)


def learn_segment(
    model: CharRNN, learner: Learner, x: torch.Tensor, y: torch.Tensor, state: State | None
) -> tuple[torch.Tensor, State]:
    """Score one segment with the current weights, then step on it: (loss sum, detached end state)."""
    logits, state = model(x, state)  # [1, T, V]
    losses = F.cross_entropy(logits.float()[0], y[0], reduction="none")  # [T]
    losses.mean().backward()
    learner.step()
    return losses.detach().sum(dtype=torch.float64), detach_state(state)


def evaluate_dynamic(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    settings: AdaptSettings | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """The loss of ids[i] -> ids[i+1] over the text while a copy of the model learns from it.

    One sequential pass (no parallel streams: each segment needs the weights the previous ones
    left), one forward and one backward per segment; `model` is not changed.
    """
    settings = settings or AdaptSettings()
    count = int(ids.size) - 1
    if count < 1:
        raise InputError("the text must have at least 2 characters (one prediction) to be scored")
    copy = learning_copy(model)
    learner = Learner(copy, settings)
    total = torch.zeros((), dtype=torch.float64, device=device)
    state: State | None = None
    for begin, end in segments(count, settings.seq):
        x = torch.from_numpy(np.asarray(ids[begin:end], dtype=np.int64)).to(device)[None]
        y = torch.from_numpy(np.asarray(ids[begin + 1 : end + 1], dtype=np.int64)).to(device)[None]
        loss, state = learn_segment(copy, learner, x, y, state)
        total += loss
        if progress is not None:
            progress(end, count)
    return EvalResult(loss=float(total.item()) / count, chars=count)


def adapt(model: CharRNN, ids: np.ndarray, steps: int, settings: AdaptSettings | None = None) -> CharRNN:
    """A copy of `model` after `steps` updates on `ids` (a prime), in eval mode; `model` is not changed.

    Step k trains on the k-th segment of `seq` predictions, in order through the prime and from its
    start again (state reset) after its last one.
    """
    settings = settings or AdaptSettings()
    if steps < 0:
        raise ConfigError(f"--adapt must not be negative, got {steps}")
    count = int(ids.size) - 1
    if count < settings.seq:
        raise InputError(
            f"--adapt needs a prime of at least {settings.seq + 1} characters (one segment of "
            f"{settings.seq} predictions), got {int(ids.size)}; give a longer --prime-file"
        )
    copy = learning_copy(model)
    device = next(copy.parameters()).device
    learner = Learner(copy, settings)
    parts = list(segments(count, settings.seq))
    tensor = torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(device)
    state: State | None = None
    for step in range(steps):
        begin, end = parts[step % len(parts)]
        if begin == 0:
            state = None
        _, state = learn_segment(copy, learner, tensor[None, begin:end], tensor[None, begin + 1 : end + 1], state)
    for p in copy.parameters():
        p.requires_grad_(False)
    return copy.eval()
