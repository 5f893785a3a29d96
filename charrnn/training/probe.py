"""How fast this machine trains, measured at start-up: a few timed steps of a throwaway model.

The plan turns a time budget into passes over the text, and the passes decide dropout, model
size and validation cadence. A rate written down on one machine is wrong on the next (a CPU with
native bf16 trains twice as fast as one without), so a run with a time budget times its own;
where `--dtype auto` has a choice of steps it times each, in turns, and runs the fastest
(training.step_choice).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.device import TORCH_DTYPES, autocast
from charrnn.model import CharRNN, ModelConfig, count_parameters
from charrnn.training.step_choice import choose, error_text, pick_step

# Timed steps run until this much has passed, the candidates' together (after one untimed warm-up
# step each): two candidates share it rather than doubling the start-up time.
PROBE_SECONDS = 1.0
MIN_STEPS, MAX_STEPS = 2, 8


@dataclass(frozen=True)
class Speed:
    """A training rate in FLOP/s (6 x parameters x characters per second) and where it came from."""

    flops: float
    measured: bool
    chars_per_s: float = 0.0  # of the probed model, at its median step: what the plan works from
    steps: int = 0
    best_chars_per_s: float = 0.0  # at its fastest step: what candidate steps are compared by
    model: str = ""  # e.g. "2x512 LSTM"

    def describe(self) -> str:
        if not self.measured:
            return f"assumed {self.flops / 1e9:.0f} GFLOP/s (not measured)"
        return (
            f"measured {self.chars_per_s:,.0f} chars/s on {self.model} over {self.steps} steps "
            f"({self.flops / 1e9:.0f} GFLOP/s)"
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype
) -> Callable[[], None]:
    """One training step of a fresh `config` model on a random window, as the run takes it:
    forward under autocast, fp32 loss, backward, clipping, fused AdamW (the global RNG draws it)."""
    model = CharRNN(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, config.vocab_size, (batch_size, seq_len + 1), device=device)

    def step() -> None:
        with autocast(device, dtype):
            logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), x[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def measure_speeds(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtypes: tuple[torch.dtype, ...]
) -> tuple[dict[torch.dtype, Speed], dict[torch.dtype, Exception]]:
    """Time training steps of a fresh `config` model in each of `dtypes`: (speeds, failures).

    The candidates take turns, one step each, so a shared machine's changing load falls on all of
    them alike (`rate_of`: medians for the plan, fastest steps to compare). A candidate whose step
    raises is left out, with its error. Uses its own random generator and restores the global one,
    so a run's seed gives the same weights whether or not it was probed.
    """
    steps: dict[torch.dtype, Callable[[], None]] = {}
    failures: dict[torch.dtype, Exception] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for dtype in dtypes:
            torch.manual_seed(0)  # every candidate: the same weights and window
            try:
                steps[dtype] = training_step(config, batch_size, seq_len, device, dtype)
                steps[dtype]()  # first-call costs (allocation, kernel choice) are not the rate
                synchronize(device)
            except Exception as exc:  # a kernel this machine cannot run: not a candidate
                steps.pop(dtype, None)
                failures[dtype] = exc
        times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in steps}
        rounds, start = 0, time.perf_counter()
        while steps and (rounds < MIN_STEPS or (rounds < MAX_STEPS and time.perf_counter() - start < PROBE_SECONDS)):
            for dtype, step in list(steps.items()):
                began = time.perf_counter()
                try:
                    step()
                    synchronize(device)
                except Exception as exc:
                    del steps[dtype], times[dtype]
                    failures[dtype] = exc
                    continue
                times[dtype].append(time.perf_counter() - began)
            rounds += 1
    return {dtype: rate_of(config, batch_size * seq_len, times[dtype]) for dtype in steps}, failures


def rate_of(config: ModelConfig, chars_per_step: int, times: list[float]) -> Speed:
    """The rate of steps that took `times` seconds: the median's for the plan (the load there is
    now is the load the run will likely share), the fastest's for comparing candidate steps (other
    processes only ever slow a step down, so the fastest is the least disturbed)."""
    chars_per_s = chars_per_step / max(statistics.median(times), 1e-9)
    return Speed(
        flops=6 * count_parameters(config) * chars_per_s,
        measured=True,
        chars_per_s=chars_per_s,
        steps=len(times),
        model=f"{config.num_layers}x{config.hidden_size} {config.cell.upper()}",
        best_chars_per_s=chars_per_step / max(min(times), 1e-9),
    )


def measure_speed(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype
) -> Speed:
    """This device's training rate for a fresh `config` model in `dtype` (its error, where it fails)."""
    speeds, failures = measure_speeds(config, batch_size, seq_len, device, (dtype,))
    if dtype in failures:
        raise failures[dtype]
    return speeds[dtype]


def fastest_dtype(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtypes: tuple[torch.dtype, ...]
) -> tuple[torch.dtype, dict[torch.dtype, float]]:
    """Of `dtypes`, the one this device trains `config` fastest in (the first, unless another is
    clearly faster: `step_choice.choose`), and each one's chars/s (at its fastest step).

    On a GPU bf16 is not always the faster: its casts cost more than its matmuls save on a small
    model (an H200 ran a plain 2x512 loop at 725k chars/s in fp32 and 654k under bf16 autocast).
    """
    speeds, failures = measure_speeds(config, batch_size, seq_len, device, dtypes)
    if not speeds:
        raise failures[dtypes[0]]
    fastest = choose({dtype: speed.best_chars_per_s for dtype, speed in speeds.items()}, dtypes)
    return fastest, {dtype: speed.best_chars_per_s for dtype, speed in speeds.items()}


def probe_steps(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, allowed: tuple[str, ...]
) -> tuple[str, Speed, str]:
    """Time the `allowed` steps (dtype names, the default first) on `config`: (the one picked, its
    rate, the note the run prints). Where every candidate fails, the default's error is raised."""
    dtypes = tuple(TORCH_DTYPES[name] for name in allowed)
    speeds, failures = measure_speeds(config, batch_size, seq_len, device, dtypes)
    if not speeds:
        raise failures[dtypes[0]]
    names = dict(zip(dtypes, allowed, strict=True))
    rates = {names[dtype]: speed.best_chars_per_s for dtype, speed in speeds.items()}
    picked, note = pick_step(allowed, rates, {names[dtype]: error_text(exc) for dtype, exc in failures.items()})
    return picked, speeds[TORCH_DTYPES[picked]], note
