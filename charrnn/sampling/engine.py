"""The one generation loop: `charrnn sample`, `charrnn serve`, the REPL and the Python API all run it.

Rows (one per sample) join with their primed state, are picked each step with their own settings
and seeded uniforms, hand out characters, and leave when they end:

    add(rows, logits, state)       rows join the batch (their primes fed already: `feed_prime`)
    step()                         per settings group: adjust (bias, penalties, masks) and choose;
                                   each row takes its character (`Row.take`: window, n-grams, regex
                                   state, stop strings held back); ended rows leave; one batched step
    keep(rows)                     the caller drops rows (a client gone, a time limit)

A row's text depends only on its prime, settings and seed: uniform t of a row is SplitMix64 output
t of its seed (charrnn.sampling.rng), whichever rows share the batch and whenever it joined.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charrnn.sampling import rng
from charrnn.sampling.pick import Compiled, adjust, choose, log_softmax
from charrnn.sampling.steppers_protocol import Stepper


@dataclass(frozen=True)
class Piece:
    """A chunk of one sample's generated text; `done` on the sample's last piece, which also carries
    the sample's total log-probability (when asked for) and why it ended."""

    index: int
    text: str
    done: bool = False
    seed: int | None = None
    logprob: float | None = None
    chars: int = 0  # characters generated, on the last piece
    reason: str | None = None


@dataclass(frozen=True)
class Token:
    """One generated character and, when asked for, its log-probability and the likeliest alternatives."""

    char: str
    logprob: float | None = None
    top: dict[str, float] | None = None


@dataclass(eq=False)
class Row:
    """One sample: what it was asked for, and the state its controls carry from step to step."""

    index: int
    start: list[int]  # the prime's ids (or the unprinted newline `start_ids` gives when there is none)
    compiled: Compiled
    seed: int
    length: int
    stop: tuple[str, ...] = ()
    keep_stop: bool = True
    logprobs: int | None = None  # report each character's log-probability and this many alternatives
    scored: bool = False  # sum the log-probability of the text (jsonl, best_of, beam)
    made: int = 0  # characters picked so far; also the index of the row's next uniform
    last: int = -1  # the id picked last
    score: float = 0.0  # total log-probability (under the model itself, temperature 1) when `scored`
    finish_reason: str | None = None  # "stop" or "length" once it ended by itself
    held: list[Token] = field(default_factory=list)
    window: deque[int] = field(init=False)
    counts: np.ndarray | None = field(init=False, default=None)
    recent: deque[int] = field(init=False)
    grams: dict[tuple[int, ...], frozenset[int]] | None = field(init=False, default=None)  # never changed in place
    state: int = field(init=False, default=0)
    uniforms: rng.RowUniforms = field(init=False)

    def __post_init__(self) -> None:
        self.uniforms = rng.RowUniforms(self.seed)
        settings = self.compiled.settings
        size = len(self.compiled.chars)
        self.window = deque(maxlen=settings.penalty_window)
        if settings.penalised:
            self.counts = np.zeros(size, dtype=np.float32)
            for char_id in self.start[-settings.penalty_window :]:
                self._count(char_id)
        n = settings.no_repeat_ngram
        self.recent = deque(self.start[-(n - 1) :] if n > 1 else [], maxlen=max(n - 1, 0))
        if n:
            self.grams = {}
            for end in range(n - 1, len(self.start)):
                self._gram(tuple(self.start[end - n + 1 : end]), self.start[end])
        if self.compiled.constraint is not None:
            self.state = self.compiled.constraint.start

    @property
    def hold(self) -> int:
        """Characters held back so that a stop string is matched whole and never handed out in part."""
        return max((len(s) for s in self.stop), default=1) - 1

    @property
    def wants_logprob(self) -> bool:
        return self.scored or self.logprobs is not None

    def empty_end(self) -> str | None:
        """Why the row ends before its first character, if it does: length 0, or a regex only "" matches."""
        constraint = self.compiled.constraint
        if self.length == 0 and (constraint is None or constraint.accepting(self.state)):
            return "length"
        if constraint is not None and not constraint.allowed(self.state).any():
            return "stop"
        return None

    def allowed(self) -> np.ndarray | None:
        """The characters this row may pick next (None: all). A full n-gram ban yields rather than end the row."""
        mask = None
        constraint = self.compiled.constraint
        if constraint is not None:
            past = self.made >= self.length and not constraint.accepting(self.state)
            mask = constraint.finishing(self.state) if past else constraint.allowed(self.state)
        if self.grams is not None:
            banned = self.grams.get(tuple(self.recent))
            if banned:
                ngram = np.ones(len(self.compiled.chars), dtype=bool)
                ngram[list(banned)] = False
                both = ngram if mask is None else mask & ngram
                if both.any():
                    mask = both
        return mask

    def _count(self, char_id: int) -> None:
        assert self.counts is not None
        if len(self.window) == self.window.maxlen:
            self.counts[self.window[0]] -= 1
        self.window.append(char_id)
        self.counts[char_id] += 1

    def _gram(self, before: tuple[int, ...], char_id: int) -> None:
        assert self.grams is not None
        seen = self.grams.get(before, frozenset())
        if char_id not in seen:
            self.grams[before] = seen | {char_id}

    def fork(self) -> Row:
        """An independent copy (beam search): what it carries is copied, the n-gram sets are shared."""
        child = copy.copy(self)
        child.held = list(self.held)
        child.window = deque(self.window, maxlen=self.window.maxlen)
        child.recent = deque(self.recent, maxlen=self.recent.maxlen)
        child.counts = None if self.counts is None else self.counts.copy()
        child.grams = None if self.grams is None else dict(self.grams)
        return child

    def take(self, char_id: int, token: Token) -> tuple[list[Token], str | None]:
        """Record the picked character; what can be handed out now, and why the row ended (None: it goes on)."""
        self.made += 1
        self.last = char_id
        if self.counts is not None:
            self._count(char_id)
        if self.grams is not None:
            self._gram(tuple(self.recent), char_id)
            if self.recent.maxlen:
                self.recent.append(char_id)
        if self.scored and token.logprob is not None:
            self.score += token.logprob
        reason = None
        constraint = self.compiled.constraint
        if constraint is not None:
            self.state = constraint.advance(self.state, char_id)
        self.held.append(token)
        release = self.held
        if self.stop:
            tail = "".join(t.char for t in self.held[-self.hold - 1 :])
            matched = next((s for s in self.stop if tail.endswith(s)), None)
            if matched is not None:
                reason = "stop"
                if not self.keep_stop:
                    release = self.held[: len(self.held) - len(matched)]
        if reason is None:
            if constraint is None:
                reason = "length" if self.made >= self.length else None
            elif constraint.accepting(self.state) and self.made >= self.length:
                reason = "length"
            elif not constraint.allowed(self.state).any():
                reason = "stop"  # a full match that nothing may extend
        if reason is None:
            cut = len(self.held) - self.hold
            release, self.held = self.held[:cut], self.held[cut:]
        else:
            self.held = []
            self.finish_reason = reason
        return release, reason


Event = tuple[Row, list[Token], "str | None"]


def as_numpy(logits: Any) -> np.ndarray:
    """float32 numpy logits from a numpy array or a torch tensor on any device."""
    if isinstance(logits, np.ndarray):
        return np.ascontiguousarray(logits, dtype=np.float32)
    return np.asarray(logits.detach().float().cpu().numpy())


class Engine:
    """The batch of rows of one model, stepped together (not thread-safe: one thread drives it)."""

    def __init__(self, stepper: Stepper, chars: Sequence[str]) -> None:
        self.stepper = stepper
        self.chars = list(chars)
        self.rows: list[Row] = []
        self.logits: np.ndarray | None = None  # [len(rows), V]: the next pick of each row

    def add(self, rows: list[Row], logits: Any, state: Any) -> list[Event]:
        """Rows join with their primes' last logits [n, V] and state [L, n, H] (numpy or torch); rows
        that end before their first character (length 0, a regex only "" matches) end at once (their
        events returned)."""
        # Rows with equal settings share one Compiled, so that they are picked as one group (requests
        # compile their own; interning against the rows now in the batch keeps nothing after they leave).
        live = {row.compiled.settings: row.compiled for row in self.rows}
        for row in rows:
            row.compiled = live.setdefault(row.compiled.settings, row.compiled)
        fresh = as_numpy(logits)
        before = len(self.rows)
        self.stepper.extend(state)
        self.rows.extend(rows)
        self.logits = fresh if self.logits is None or not before else np.concatenate([self.logits, fresh])
        events: list[Event] = []
        keep = list(range(before))
        for number, row in enumerate(rows):
            reason = row.empty_end()
            if reason is None:
                keep.append(before + number)
            else:
                row.finish_reason = reason
                events.append((row, [], reason))
        self.keep(keep)
        return events

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows numbered `keep`, in that order (a number may repeat: beam search forks rows)."""
        if keep == list(range(len(self.rows))):
            return
        self.rows = [self.rows[i] for i in keep]
        self.stepper.select(np.array(keep, dtype=np.int64))  # none left: the stepper holds no stream either
        self.logits = self.logits[keep] if keep and self.logits is not None else None

    def pick(self) -> np.ndarray:
        """Each row's next character id [N], each settings group adjusted and chosen together."""
        rows, logits = self.rows, self.logits
        assert logits is not None
        draws = np.array([row.uniforms.at(row.made) for row in rows], dtype=np.float32)
        compiled = rows[0].compiled
        if all(row.compiled is compiled for row in rows):  # the usual case: one request's settings
            return self._choose(compiled, list(range(len(rows))), logits, draws)
        ids = np.empty(len(rows), dtype=np.int64)
        groups: dict[int, list[int]] = {}
        for number, row in enumerate(rows):
            groups.setdefault(id(row.compiled), []).append(number)
        for members in groups.values():
            ids[members] = self._choose(rows[members[0]].compiled, members, logits[members], draws[members])
        return ids

    def _choose(self, compiled: Compiled, members: list[int], logits: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """The picks of rows `members` (their `logits` and uniforms), which share `compiled`."""
        rows = self.rows
        counts = None
        if compiled.settings.penalised:
            counts = np.stack([rows[i].counts for i in members])  # type: ignore[misc]
        masks = [rows[i].allowed() for i in members] if compiled.masks else []
        allowed = None
        if any(m is not None for m in masks):
            allowed = np.stack([np.ones(len(self.chars), dtype=bool) if m is None else m for m in masks])
        if compiled.bias is not None or counts is not None or allowed is not None:
            logits = adjust(logits.copy(), compiled, counts, allowed)
        return choose(logits, compiled.settings, draws)

    def tokens(self, ids: np.ndarray) -> list[Token]:
        """Each row's character, with its log-probability (the model's own, temperature 1) where the row
        wants it, and its `logprobs` likeliest alternatives."""
        chars, rows = self.chars, self.rows
        tokens = [Token(chars[i]) for i in ids.tolist()]
        wanting = [number for number, row in enumerate(rows) if row.wants_logprob]
        if not wanting:
            return tokens
        assert self.logits is not None
        logp = log_softmax(self.logits[wanting])
        for k, number in enumerate(wanting):
            char_id = int(ids[number])
            count = min(rows[number].logprobs or 0, len(chars))
            top = None
            if count:
                best = np.argsort(-logp[k], kind="stable")[:count]
                top = {chars[j]: float(logp[k, j]) for j in best.tolist()}
            tokens[number] = Token(chars[char_id], float(logp[k, char_id]), top)
        return tokens

    def step(self) -> list[Event]:
        """One character for every row; rows that ended leave; the rest advance one batched step."""
        ids = self.pick()
        tokens = self.tokens(ids)
        events: list[Event] = []
        keep = []
        for number, row in enumerate(self.rows):
            released, reason = row.take(int(ids[number]), tokens[number])
            if released or reason is not None:
                events.append((row, released, reason))
            if reason is None:
                keep.append(number)
        if len(keep) < len(self.rows):
            self.keep(keep)
            ids = ids[keep]
        if self.rows:
            self.logits = self.advance(ids)
        return events

    def advance(self, ids: np.ndarray) -> np.ndarray:
        """One batched step of the stepper with the rows' last ids: their next logits [N, V]."""
        step_numpy = getattr(self.stepper, "step_numpy", None)
        if step_numpy is not None:  # numpy's BLAS: no torch round trip per character
            return step_numpy(ids)
        return as_numpy(self.stepper.step(ids))
