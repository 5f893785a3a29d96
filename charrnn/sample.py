"""Generation: feed the prime once, then one character per step carrying the state.

Sampling is a pure function of (logits, settings, generator): temperature 0 is argmax,
top-k and top-p trim the distribution, and an explicit torch.Generator makes a seed
reproduce the same text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from charrnn.errors import ConfigError, InputError
from charrnn.model import CharRNN, State
from charrnn.vocab import Vocab, describe_chars

CHUNK_CHARS = 16


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


def choose(logits: torch.Tensor, settings: SampleSettings, generator: torch.Generator) -> torch.Tensor:
    """Next ids [N] from logits [N, V]."""
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / settings.temperature
    if settings.top_k is not None and settings.top_k < logits.size(-1):
        kth = torch.topk(logits, settings.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p is not None and settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly above each entry
        sorted_probs = sorted_probs.masked_fill(before >= settings.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_prime(vocab: Vocab, prime: str) -> None:
    missing = vocab.unknown(prime)
    if missing:
        raise InputError(
            f"the prime uses {len(missing)} character(s) the model never saw: {describe_chars(missing)}; "
            "remove them or train on text that has them"
        )


def start_ids(vocab: Vocab, prime: str) -> list[int]:
    """Ids to feed before sampling: the prime, or a newline (not printed) when there is none."""
    if prime:
        return [int(i) for i in vocab.encode(prime)]
    for char in ("\n", " "):
        index = vocab.index(char)
        if index is not None:
            return [index]
    return [0]


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 1000,
    settings: SampleSettings | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[str]:
    """Text in small chunks as it is produced (the prime itself is not yielded).

    Arguments are checked here, before the first chunk is asked for, so a bad prime fails
    before anything is printed.
    """
    if length < 0:
        raise ConfigError(f"--length must not be negative, got {length}")
    check_prime(vocab, prime)
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(new_seed() if seed is None else seed)
    return _generate(model, vocab, start_ids(vocab, prime), length, settings or SampleSettings(), generator)


@torch.no_grad()
def _generate(
    model: CharRNN,
    vocab: Vocab,
    start: list[int],
    length: int,
    settings: SampleSettings,
    generator: torch.Generator,
) -> Iterator[str]:
    model.eval()
    ids = torch.tensor([start], dtype=torch.long, device=generator.device)
    logits, state = model(ids, None)
    last: torch.Tensor = logits[:, -1]
    pending: list[int] = []
    for _ in range(length):
        next_id = choose(last, settings, generator)  # [1]
        pending.append(int(next_id))
        if len(pending) >= CHUNK_CHARS:
            yield vocab.decode(pending)
            pending = []
        logits, state = step(model, next_id, state)
        last = logits[:, -1]
    if pending:
        yield vocab.decode(pending)


def step(model: CharRNN, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One character for each stream: ids [N] -> logits [N, 1, V]."""
    return model(ids.view(-1, 1), state)
