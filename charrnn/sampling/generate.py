"""`charrnn sample`'s side of generation: N samples of one prime through the engine, streamed in order.

    prime ----forward once----> state [L, 1, H] --repeat--> [L, N, H] --Engine.add--> rows
    loop:  Engine.step(): pick per row (settings, seeded uniforms) --> characters --> stepper

Each sample's uniforms come from its own seed (charrnn.sampling.rng), so `--seed S -n 4` prints
the same four texts as `--seed S`, `--seed S+1`, ... one at a time, and as `charrnn serve` with
the same seed and settings. `best_of` draws more samples and keeps the likeliest; `beam` searches
instead of sampling (charrnn.sampling.beam).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.errors import ConfigError, InputError
from charrnn.sampling.backend import Backend
from charrnn.sampling.controls import RunSettings, SampleSettings
from charrnn.sampling.engine import Engine, Piece, Row
from charrnn.sampling.pick import compile_settings
from charrnn.vocab import Vocab, describe_chars

if TYPE_CHECKING:
    from charrnn.adapt.settings import AdaptSettings
    from charrnn.model import CharRNN

CHUNK_CHARS = 16  # characters per yielded chunk: small enough to stream, big enough to be cheap
FLUSH_S = 0.05  # ...or whatever is ready after this long, so slow models stream smoothly too


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
    from charrnn.adapt.learn import adapt

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


def sample_seeds(seed: int | None, count: int) -> list[int]:
    """Seeds for `count` samples: seed, seed+1, ... (a fresh random base when seed is None; RunSettings
    has checked that the last one fits in 64 bits)."""
    base = new_seed() if seed is None else seed
    return [base + i for i in range(count)]


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    settings: SampleSettings | None = None,
    run: RunSettings | None = None,
    device: Any = "cpu",
    engine: str = "fast",
    weights: str = "fp32",
    threads: int | None = None,
) -> Iterator[str]:
    """One sample's generated text in small chunks as it is produced (the prime is not yielded).

    Arguments are checked here, before the first chunk is asked for, so a bad prime fails
    before anything is printed.
    """
    run = run or RunSettings()
    one = replace(run, num_samples=1, best_of=None)
    pieces = generate_many(model, vocab, prime, settings, one, device, engine, weights, threads)
    return (piece.text for piece in pieces if piece.text)


def generate_many(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    settings: SampleSettings | None = None,
    run: RunSettings | None = None,
    device: Any = "cpu",
    engine: str = "fast",
    weights: str = "fp32",
    threads: int | None = None,
    seeds: list[int] | None = None,
    scored: bool = False,
) -> Iterator[Piece]:
    """`generate_from` on a torch model: `engine` and `weights` pick how the steps are computed
    (charrnn.sampling.steppers); fp32 engines agree on the text of a seed."""
    from charrnn.sampling.torch_backend import TorchBackend

    backend = TorchBackend(model, vocab.chars, device, engine, weights)
    return generate_from(backend, vocab, prime, settings, run, threads, seeds, scored)


def generate_from(
    backend: Backend,
    vocab: Vocab,
    prime: str = "",
    settings: SampleSettings | None = None,
    run: RunSettings | None = None,
    threads: int | None = None,
    seeds: list[int] | None = None,
    scored: bool = False,
) -> Iterator[Piece]:
    """`run.num_samples` samples computed together, yielded in order: all of sample 0, then 1, ...

    A sample ends after `run.length` generated characters (with `match`: at the first full match
    from there on) or just after it produces one of `run.stop`. `threads` (default: the backend's
    choice for this many rows, the idle cores) holds while the samples are drawn; the process's
    thread settings come back when the iterator ends or is closed. `seeds` (default: from
    `run.seed`) gives each sample's seed, one sample per seed; `scored` adds each sample's
    log-probability. Arguments are checked before the first piece is asked for.
    """
    settings = settings or SampleSettings()
    run = run or RunSettings()
    if seeds is not None and not seeds:
        raise ConfigError("--num-samples must be at least 1")
    check_prime(vocab, prime)
    compiled = compile_settings(settings, vocab.chars)  # a bad regex or bias fails before any text
    draws = run.beam or run.draws
    count = backend.default_threads(draws) if threads is None else threads
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    seeds = seeds if seeds is not None else sample_seeds(run.seed, 1 if run.beam else run.draws)
    start = start_ids(vocab, prime)
    if run.beam:
        from charrnn.sampling.beam import beam_pieces

        return beam_pieces(backend, count, compiled, start, run)
    scored = scored or run.best_of is not None
    rows = [Row(i, start, compiled, seed, run.length, run.stop, run.keep_stop, scored=scored)
            for i, seed in enumerate(seeds)]  # fmt: skip
    events = _run(backend, count, rows)
    if run.best_of is not None:
        return best_pieces(events, run.num_samples)
    return in_order(events, len(rows))


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


def best_pieces(events: Iterator[Piece], keep: int) -> Iterator[Piece]:
    """`keep` whole samples, the highest log-probability per character first (renumbered 0, 1, ...)."""
    texts: dict[int, list[str]] = {}
    last: dict[int, Piece] = {}
    for piece in events:
        texts.setdefault(piece.index, []).append(piece.text)
        if piece.done:
            last[piece.index] = piece
    ranked = sorted(last.values(), key=lambda p: -(p.logprob or 0.0) / max(p.chars, 1))
    for rank, piece in enumerate(ranked[:keep]):
        yield replace(piece, index=rank, text="".join(texts[piece.index]))


def score_of(row: Row) -> float | None:
    return row.score if row.scored else None


def _run(backend: Backend, threads: int, rows: list[Row]) -> Iterator[Piece]:
    """Pieces as they are computed, samples interleaved."""
    with backend.threads(threads):  # the prime too: a torch team woken for it would spin beside numpy's BLAS threads
        engine = Engine(backend.stepper(), backend.chars)
        last, state = backend.prime(rows[0].start)
        count = len(rows)
        ended = engine.add(rows, np.repeat(last, count, axis=0), backend.repeat(state, count))
        for row, _, reason in ended:
            yield Piece(row.index, "", True, row.seed, score_of(row), 0, reason)
        pending = [""] * count
        flush_at = time.monotonic() + FLUSH_S
        while engine.rows:
            events = engine.step()
            now = time.monotonic()
            flush = now >= flush_at  # a slow model still streams smoothly
            if flush:
                flush_at = now + FLUSH_S
            for row, tokens, reason in events:
                text = pending[row.index] + "".join(t.char for t in tokens)
                if reason is not None:
                    pending[row.index] = ""
                    yield Piece(row.index, text, True, row.seed, score_of(row), row.made, reason)
                elif len(text) >= CHUNK_CHARS:
                    pending[row.index] = ""
                    yield Piece(row.index, text)
                else:
                    pending[row.index] = text
            if flush:
                for row in engine.rows:
                    if pending[row.index]:
                        yield Piece(row.index, pending[row.index])
                        pending[row.index] = ""
