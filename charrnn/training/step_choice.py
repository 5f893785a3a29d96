"""Which training step `--dtype auto` runs: the fastest of the candidates, as timed on this machine.

The fastest step differs by CPU. Under bf16 autocast oneDNN runs its bf16 LSTM, 1.9x its fp32 one
on a Zen 5 EPYC with AVX-512 BF16, but not on every CPU and every model size; flags alone cannot
tell. So the start-up probe that times the machine for the plan (training.probe) times each step
the request allows, in turns, and the plan works from the rate of the one picked. The pick is
stored as the schedule's `dtype`, so a resumed run runs the same kernel and continues exactly.

The choice itself is a pure function of the measured rates (`pick_step`), tested with fake ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import torch

from charrnn import device as devices
from charrnn.device import TORCH_DTYPES

K = TypeVar("K", bound=Hashable)

# Another candidate must beat the default by more than this share to be picked: two steps about
# as fast would otherwise flip from run to run with the machine's noise (and each pick is a
# different kernel, so different numbers from the same seed).
TIE_SHARE = 0.03
LABELS = {"bf16": "bf16 autocast", "fp32": "fp32", "fp16": "fp16 autocast"}
ERROR_CHARS = 80  # of a failed candidate's error, in the note


def step_candidates(asked: str, device: torch.device, resolved: torch.dtype) -> tuple[str, ...]:
    """The steps a run may take, its default first (the dtype `device.resolve_dtype` gave).

    Only `--dtype auto` on a CPU with native bf16 has a choice, bf16 autocast or fp32: an explicit
    dtype is kept, and a CPU without native bf16 never tries emulated bf16 (~80x slower). A GPU
    chooses later, on the run's own model (`setup.pick_gpu_dtype`).
    """
    default = next(name for name, dtype in TORCH_DTYPES.items() if dtype == resolved)
    if asked == "auto" and device.type == "cpu" and default == "bf16":
        return ("bf16", "fp32")
    return (default,)


def choose(rates: Mapping[K, float], order: Sequence[K], tie: float = TIE_SHARE) -> K:
    """The fastest of `rates`, unless the first of `order` that was measured (the default) is
    within `tie` of it; candidates not measured (failed) are not in `rates`."""
    measured = [key for key in order if key in rates]
    if not measured:
        raise ValueError("no candidate step was measured")
    default = measured[0]
    fastest = max(measured, key=lambda key: rates[key])
    return fastest if rates[fastest] > rates[default] * (1 + tie) else default


def pick_step(allowed: Sequence[str], rates: Mapping[str, float], failed: Mapping[str, str]) -> tuple[str, str]:
    """(the step to run, the one line the run prints about it) from each candidate's chars/s.

    `allowed` holds the candidates, the default first; `rates` those measured, `failed` the error
    text of those whose step raised. Nothing to choose from (one candidate) gives no note.
    """
    picked = choose(rates, allowed)
    if len(allowed) == 1:
        return picked, ""
    others = [name for name in allowed if name in rates and name != picked]
    parts = []
    if others:
        runner_up = max(others, key=lambda name: rates[name])
        ratio = rates[picked] / rates[runner_up]
        parts.append(f"{ratio:.2f}x {LABELS[runner_up]} here")
        if ratio < 1 + TIE_SHARE:
            parts.append(f"within {TIE_SHARE:.0%}: the default")
    parts += [f"{LABELS[name]} failed: {failed[name][:ERROR_CHARS]}" for name in allowed if name in failed]
    return picked, f"auto: {LABELS[picked]}, " + "; ".join(parts)


def error_text(exc: BaseException) -> str:
    """A failed candidate's error on one line."""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


def resumed_dtype(stored: str, device: torch.device, resolved: torch.dtype) -> torch.dtype:
    """`--dtype auto` resumed: the step the run measured and chose at its start, so the same kernel
    runs on (and a run continues bit-exactly), where this device runs it natively; else `resolved`
    (a run moved to a machine without that dtype)."""
    dtype = TORCH_DTYPES.get(stored)
    if dtype == torch.float32:
        return dtype
    if device.type == "cuda" and dtype is not None:
        return dtype if dtype != torch.bfloat16 or torch.cuda.is_bf16_supported() else resolved
    if device.type == "cpu" and dtype == torch.bfloat16 and devices.cpu_supports_fast_bf16():
        return dtype
    return resolved
