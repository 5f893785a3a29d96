"""Generation: feed the prime once, then one character per step carrying the state.

Sampling is a pure function of (logits, settings, uniform draws): temperature 0 is argmax,
top-k and top-p trim the distribution, and the pick is the inverse CDF at a uniform number.
Each sample draws its uniforms from its own seeded generator, so a sample's text depends only on
its seed, not on which engine computes the logits, nor on how many other samples share the batch:

    seeds  S, S+1, ..., S+N-1  ->  N generators  ->  uniforms U [N, BLOCK] (drawn BLOCK steps at a time)
    prime ----forward once----> state [L, 1, H] --repeat--> [L, N, H]
    loop:  logits [N, V] --pick(U[:, t])--> ids [N] --stepper--> logits [N, V]

`--seed S -n 4` therefore prints the same four texts as `--seed S`, `--seed S+1`, ... one at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial

import torch

from charrnn.adapt.learn import adapt
from charrnn.adapt.settings import AdaptSettings
from charrnn.errors import ConfigError, InputError
from charrnn.model import CharRNN, State
from charrnn.sampling.pick import SampleSettings, pick
from charrnn.sampling.steppers import Stepper, make_stepper
from charrnn.sampling.threads import auto_threads, sampling_threads
from charrnn.vocab import Vocab, describe_chars

CHUNK_CHARS = 16  # characters per yielded chunk: small enough to stream, big enough to be cheap
FLUSH_S = 0.05  # ...or whatever is ready after this long, so slow models stream smoothly too
BLOCK = 256  # uniforms drawn per generator call
PRIME_WINDOW = 4096  # the prime is fed in windows of this many characters


@dataclass(frozen=True)
class Piece:
    """A chunk of one sample's generated text; `done` on the sample's last piece."""

    index: int
    text: str
    done: bool = False


def check_prime(vocab: Vocab, prime: str) -> None:
    missing = vocab.unknown(prime)
    if missing:
        raise InputError(
            f"the prime uses {len(missing)} character(s) the model never saw: {describe_chars(missing)}; "
            "remove them or train on text that has them"
        )


def adapted_model(
    model: CharRNN, vocab: Vocab, prime: str, steps: int, settings: AdaptSettings | None = None
) -> CharRNN:
    """`model` itself when `steps` is 0, else a copy after `steps` updates on the prime (charrnn.adapt);
    sample from it through `generate` / `generate_many` as from any model."""
    if steps < 0:
        raise ConfigError(f"--adapt must not be negative, got {steps}")
    if steps == 0:
        return model
    if not prime:
        raise InputError("--adapt learns from the prime: give a long --prime or --prime-file")
    check_prime(vocab, prime)
    return adapt(model, vocab.encode(prime), steps, settings)


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


MAX_SEED = 2**64 - 1


def sample_seeds(seed: int | None, count: int) -> list[int]:
    """Seeds for `count` samples: seed, seed+1, ... (a fresh random base when seed is None)."""
    if seed is not None and not 0 <= seed <= MAX_SEED - max(count - 1, 0):
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED - max(count - 1, 0)}, got {seed}")
    base = new_seed() if seed is None else seed
    return [base + i for i in range(count)]


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 1000,
    settings: SampleSettings | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    stop: Sequence[str] = (),
    keep_stop: bool = True,
    engine: str = "fast",
    weights: str = "fp32",
    threads: int | None = None,
) -> Iterator[str]:
    """One sample's generated text in small chunks as it is produced (the prime is not yielded).

    Arguments are checked here, before the first chunk is asked for, so a bad prime fails
    before anything is printed.
    """
    seeds = sample_seeds(seed, 1)
    pieces = generate_many(
        model, vocab, prime, length, settings, seeds, device, stop, keep_stop, engine, weights, threads
    )
    return (piece.text for piece in pieces if piece.text)


def generate_many(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    length: int = 1000,
    settings: SampleSettings | None = None,
    seeds: Sequence[int] = (0,),
    device: torch.device | str = "cpu",
    stop: Sequence[str] = (),
    keep_stop: bool = True,
    engine: str = "fast",
    weights: str = "fp32",
    threads: int | None = None,
) -> Iterator[Piece]:
    """len(seeds) independent samples computed together, yielded in order: all of sample 0, then 1, ...

    A sample ends after `length` generated characters or just after it produces one of `stop`
    (which is kept in its text, or dropped when `keep_stop` is false). `engine` and `weights`
    pick how the steps are computed (charrnn.sampling.steppers); fp32 engines agree on the text of a seed.
    `threads` (default: `auto_threads`, the idle cores) holds while the samples are drawn; the
    process's thread settings come back when the iterator ends or is closed.
    """
    if length < 0:
        raise ConfigError(f"--length must not be negative, got {length}")
    if not seeds:
        raise ConfigError("--num-samples must be at least 1")
    if any(not s for s in stop):
        raise ConfigError("--stop needs a non-empty string")
    check_prime(vocab, prime)
    stepper = make_stepper(model, engine, weights)  # checks the engine and weights now, too
    target = torch.device(device)
    count = auto_threads(len(seeds), engine, weights) if threads is None else threads
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    events = _run(
        model,
        stepper,
        partial(sampling_threads, count, engine, weights, target),
        vocab,
        start_ids(vocab, prime),
        length,
        settings or SampleSettings(),
        list(seeds),
        target,
        tuple(stop),
        keep_stop,
    )
    return in_order(events, len(seeds))


def in_order(events: Iterator[Piece], count: int) -> Iterator[Piece]:
    """Reorder pieces so sample i comes whole before sample i+1; sample 0 still streams live.

    Closing this iterator closes `events` at once (its threads come back then, not whenever the
    garbage collector gets to it).
    """
    held: list[list[Piece]] = [[] for _ in range(count)]
    done = [False] * count
    current = 0
    try:
        for piece in events:
            if piece.index == current:
                yield piece
            else:
                held[piece.index].append(piece)
            done[piece.index] = done[piece.index] or piece.done
            while current < count and done[current]:
                current += 1
                if current < count:
                    yield from held[current]
                    held[current] = []
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def feed_prime(model: CharRNN, start: list[int], device: torch.device) -> tuple[torch.Tensor, State]:
    """Run the prime through the model's own (fused) forward: last logits [1, V] and the state."""
    state: State | None = None
    ids = torch.tensor([start], dtype=torch.long, device=device)
    for begin in range(0, ids.size(1), PRIME_WINDOW):
        logits, state = model(ids[:, begin : begin + PRIME_WINDOW], state)
    assert state is not None
    return logits[:, -1].float(), state


def repeat_state(state: State, count: int) -> State:
    if isinstance(state, tuple):
        return tuple(s.repeat(1, count, 1) for s in state)  # type: ignore[return-value]
    return state.repeat(1, count, 1)


def uniform_block(seed_generator: torch.Generator) -> torch.Tensor:
    """The next BLOCK uniforms of one sample's generator: the one rule a seed's text depends on."""
    return torch.rand(BLOCK, generator=seed_generator)


class Uniforms:
    """Per-sample uniform numbers, one per step, each sample from its own seeded CPU generator."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.device = device
        self.block = torch.empty(0)
        self.offset = BLOCK

    def next(self, rows: list[int]) -> torch.Tensor:
        """Uniforms [len(rows)] for this step, for the samples numbered `rows`."""
        if self.offset == BLOCK:
            self.block = torch.stack([uniform_block(g) for g in self.generators]).to(self.device)
            self.offset = 0
        column = self.block[:, self.offset]
        self.offset += 1
        return column if len(rows) == len(self.generators) else column[rows]


@torch.inference_mode()
def _run(
    model: CharRNN,
    stepper: Stepper,
    threads: Callable[[], AbstractContextManager[None]],
    vocab: Vocab,
    start: list[int],
    length: int,
    settings: SampleSettings,
    seeds: list[int],
    device: torch.device,
    stop: tuple[str, ...],
    keep_stop: bool,
) -> Iterator[Piece]:
    """Pieces as they are computed, samples interleaved."""
    model.eval()
    count = len(seeds)
    if length == 0:
        for index in range(count):
            yield Piece(index, "", done=True)
        return
    with threads():  # the prime too: a torch team woken for it would spin beside numpy's BLAS threads
        last, state = feed_prime(model, start, device)
        stepper.load_state(repeat_state(state, count))
        logits = last.expand(count, -1)
        uniforms = Uniforms(seeds, device)
        chars = vocab.chars
        # Hold back enough text that a stop string is always whole in `pending`: it can then be
        # matched across chunk boundaries and dropped before any of it is yielded.
        hold = max((len(s) for s in stop), default=1) - 1
        rows = list(range(count))  # sample index of each live row
        pending = [""] * count
        made = [0] * count
        flush_at = time.monotonic() + FLUSH_S
        while rows:
            ids = pick(logits, settings, uniforms.next(rows))
            finished: list[int] = []
            now = time.monotonic()
            flush = now >= flush_at  # a slow model still streams smoothly
            if flush:
                flush_at = now + FLUSH_S
            for row, (index, char_id) in enumerate(zip(rows, ids.tolist(), strict=True)):
                text = pending[index] + chars[char_id]
                made[index] += 1
                matched = next((s for s in stop if text.endswith(s)), None) if stop else None
                if matched is not None or made[index] == length:
                    if matched is not None and not keep_stop:
                        text = text[: -len(matched)]
                    pending[index] = ""
                    finished.append(row)
                    yield Piece(index, text, done=True)
                elif len(text) >= CHUNK_CHARS + hold or (flush and len(text) > hold):
                    pending[index] = text[len(text) - hold :] if hold else ""
                    yield Piece(index, text[: len(text) - hold])
                else:
                    pending[index] = text
            if finished:
                keep = [row for row in range(len(rows)) if row not in finished]
                rows = [rows[row] for row in keep]
                if not rows:
                    return
                keep_rows = torch.tensor(keep, dtype=torch.long, device=device)
                stepper.select(keep_rows)
                ids = ids.index_select(0, keep_rows)
            logits = stepper.step(ids)


def step(model: CharRNN, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One character for each stream through the model's own forward: ids [N] -> logits [N, 1, V]."""
    return model(ids.view(-1, 1), state)
