"""Beam search: the K likeliest continuations, deterministically, through the engine's rows.

Each step every live beam is extended by every character the controls allow (the engine's
`adjust`: bias, penalties, n-gram and regex masks, each beam with its own history), ranked by
the running sum of log-softmax of the adjusted logits; the K best extensions live on (their
parents' state is forked: `Engine.keep` with repeated rows). A beam ends as a sample does (its
length, a stop string, a regex with nothing left); the finished ones are ranked by rank score /
length^A (`length_norm`), and the best `num_samples` returned. Temperature, top-k/p and min-p
shape sampling, not search, so they do not apply. Each sample reports the model's own
log-probability of its text (temperature 1, no controls), comparable with sampled ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from charrnn.sampling.backend import Backend
from charrnn.sampling.controls import RunSettings
from charrnn.sampling.engine import Engine, Piece, Row, Token
from charrnn.sampling.pick import Compiled, adjust, log_softmax


@dataclass
class Beam:
    row: Row
    rank: float = 0.0  # sum of the adjusted log-probabilities: what the search maximises
    text: str = ""  # handed out so far (held-back characters are still in the row)


def normalised(beam: Beam, length_norm: float) -> float:
    return beam.rank / max(beam.row.made, 1) ** length_norm if length_norm else beam.rank


def search(backend: Backend, compiled: Compiled, start: list[int], run: RunSettings) -> list[Beam]:
    """The finished beams, best first (at most run.beam of them)."""
    width = run.beam
    engine = Engine(backend.stepper(), backend.chars)
    last, state = backend.prime(start)
    first = Row(0, start, compiled, 0, run.length, run.stop, run.keep_stop, scored=True)
    if first.empty_end() is not None:
        return [Beam(first)]
    engine.add([first], last, state)
    beams = [Beam(first)]
    finished: list[Beam] = []
    while beams:
        logits = engine.logits
        assert logits is not None
        counts = np.stack([b.row.counts for b in beams]) if compiled.settings.penalised else None  # type: ignore[misc]
        masks = [b.row.allowed() for b in beams]
        allowed = None
        if any(m is not None for m in masks):
            allowed = np.stack([np.ones(logits.shape[1], dtype=bool) if m is None else m for m in masks])
        ranked = log_softmax(adjust(logits.copy(), compiled, counts, allowed))
        own = log_softmax(logits)
        totals = np.array([b.rank for b in beams], dtype=np.float64)[:, None] + ranked
        flat = totals.ravel()
        order = np.argsort(-flat, kind="stable")[: width * 2]  # enough to refill after some end
        children: list[Beam] = []
        parents: list[int] = []
        for position in order.tolist():
            if not np.isfinite(flat[position]) or len(children) == width:
                break
            parent, char_id = divmod(position, logits.shape[1])
            row = beams[parent].row.fork()
            token = Token(engine.chars[char_id], float(own[parent, char_id]))
            released, reason = row.take(char_id, token)
            beam = Beam(row, float(flat[position]), beams[parent].text + "".join(t.char for t in released))
            if reason is None:
                children.append(beam)
                parents.append(parent)
            else:
                finished.append(beam)
        finished = sorted(finished, key=lambda b: -normalised(b, run.length_norm))[:width]
        if len(finished) == width and not run.length_norm and children and children[0].rank <= finished[-1].rank:
            break  # log-probabilities only fall: no live beam can pass the worst finished one
        beams = children
        if not beams:
            break
        engine.keep(parents)
        engine.rows = [b.row for b in beams]
        engine.logits = engine.advance(np.array([b.row.last for b in beams], dtype=np.int64))
    return finished


def beam_pieces(
    backend: Backend, threads: int, compiled: Compiled, start: list[int], run: RunSettings
) -> Iterator[Piece]:
    """The best `run.num_samples` beams as whole samples (a search cannot stream: the best is known at the end)."""
    with backend.threads(threads):
        beams = search(backend, compiled, start, run)
    for rank, beam in enumerate(beams[: run.num_samples]):
        yield Piece(rank, beam.text, True, None, beam.row.score, beam.row.made, beam.row.finish_reason)
