"""How fast this machine trains, measured at start-up: a few timed steps of a throwaway model.

The plan turns a time budget into passes over the text, and the passes decide dropout, model
size and validation cadence. A rate written down on one machine is wrong on the next (a CPU with
native bf16 trains twice as fast as one without), so a run with a time budget times its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.device import autocast
from charrnn.model import CharRNN, ModelConfig, count_parameters

PROBE_SECONDS = 1.0  # timed steps run until this much has passed (after one untimed warm-up step)
MIN_STEPS, MAX_STEPS = 2, 8


@dataclass(frozen=True)
class Speed:
    """A training rate in FLOP/s (6 x parameters x characters per second) and where it came from."""

    flops: float
    measured: bool
    chars_per_s: float = 0.0  # of the probed model
    steps: int = 0
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


def measure_speed(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype
) -> Speed:
    """Time training steps (forward, backward, AdamW) of a fresh `config` model on random windows.

    Uses its own random generator and restores the global one, so a run's seed gives the same
    weights whether or not it was probed.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = CharRNN(config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, config.vocab_size, (batch_size, seq_len + 1), device=device)

        def step() -> None:
            with autocast(device, dtype):
                logits, _ = model(x[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), x[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # first-call costs (allocation, kernel choice) are not the rate
        synchronize(device)
        steps, start = 0, time.perf_counter()
        while steps < MIN_STEPS or (steps < MAX_STEPS and time.perf_counter() - start < PROBE_SECONDS):
            step()
            synchronize(device)
            steps += 1
        seconds = time.perf_counter() - start
    chars_per_s = steps * batch_size * seq_len / max(seconds, 1e-9)
    return Speed(
        flops=6 * count_parameters(config) * chars_per_s,
        measured=True,
        chars_per_s=chars_per_s,
        steps=steps,
        model=f"{config.num_layers}x{config.hidden_size} {config.cell.upper()}",
    )


def fastest_dtype(
    config: ModelConfig, batch_size: int, seq_len: int, device: torch.device, dtypes: tuple[torch.dtype, ...]
) -> tuple[torch.dtype, dict[torch.dtype, float]]:
    """Of `dtypes`, the one this device trains `config` fastest in, and each one's chars/s.

    On a GPU bf16 is not always the faster: its casts cost more than its matmuls save on a small
    model (an H200 ran a plain 2x512 loop at 725k chars/s in fp32 and 654k under bf16 autocast).
    """
    rates = {dtype: measure_speed(config, batch_size, seq_len, device, dtype).chars_per_s for dtype in dtypes}
    return max(rates, key=lambda dtype: rates[dtype]), rates
