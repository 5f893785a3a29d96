"""One choice being generated: its seeded uniforms, the text held back for stop strings, its events.

The worker thread (scheduler.py) appends characters; the request's handler takes them. The two
meet under a lock, and the worker wakes the handler only when a burst is worth sending (the first
character, CHUNK_CHARS of them, FLUSH_S since the last wake, or the end), so a step costs no
cross-thread call per stream. What the handler has not taken yet is counted per request (Backlog):
a client that stops reading stops its handler taking, and past `--max-unsent` characters the
request's streams end ("overflow") and drop what they held, instead of growing in memory.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.sampling.generate import BLOCK, CHUNK_CHARS, FLUSH_S, uniform_block
from charrnn.sampling.pick import SampleSettings

LOG = logging.getLogger("charrnn.serve")


class StreamUniforms:
    """One sample's uniforms, drawn exactly as `charrnn.sampling.generate.Uniforms` draws them.

    A generator seeded with the sample's seed, BLOCK numbers per call: the same sequence as the
    sample's row of `Uniforms`, whenever the stream joins and whichever streams share its batch.
    """

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.block = np.empty(0, dtype=np.float32)
        self.offset = BLOCK

    def next(self) -> float:
        if self.offset == BLOCK:
            self.block = uniform_block(self.generator).numpy()
            self.offset = 0
        value = float(self.block[self.offset])
        self.offset += 1
        return value


@dataclass(eq=False)
class Backlog:
    """Characters one request's streams made that its handler has not taken; the streams share its lock."""

    limit: int | None = None  # None: unbounded (a stream used outside a request)
    streams: int = 1
    unsent: int = 0
    over: bool = False  # once past the limit, every stream of the request ends
    lock: threading.Lock = field(default_factory=threading.Lock)

    def grow(self, count: int) -> bool:
        """Count `count` more (under the lock); True once the request is over its limit."""
        self.unsent += count
        if not self.over and self.limit is not None and self.unsent > self.limit:
            self.over = True
            LOG.warning(
                "a client stopped reading: %d characters were waiting for it (--max-unsent %d); "
                "its request's %d stream(s) were ended",
                self.unsent,
                self.limit,
                self.streams,
            )
        return self.over


@dataclass(frozen=True)
class Token:
    """One generated character and, when asked for, its log-probability and the likeliest alternatives."""

    char: str
    logprob: float | None = None
    top: dict[str, float] | None = None


@dataclass(eq=False)  # compared by identity (the queue removes this one, not an equal one)
class Stream:
    """One choice: `index` in the response, a prompt already checked against the vocabulary."""

    index: int
    start: list[int]
    settings: SampleSettings
    seed: int
    max_tokens: int
    stop: tuple[str, ...]
    logprobs: int | None
    timeout_s: float  # how long it may generate once admitted (--request-timeout); the queue does not count
    notify: Callable[[], None] = lambda: None  # wakes the handler; set before the stream is queued
    backlog: Backlog = field(default_factory=Backlog)  # shared by the streams of one request
    uniforms: StreamUniforms = field(init=False)
    deadline: float = field(init=False, default=math.inf)  # set when the worker admits the stream
    made: int = 0
    finish_reason: str | None = None  # "stop", "length", "timeout", "overflow" or "cancelled" once ended
    cancelled: bool = False  # set by the handler (client gone); the worker drops the row at its next step
    _held: list[Token] = field(default_factory=list)
    _ready: list[Token] = field(default_factory=list)
    _woke_at: float = 0.0

    def __post_init__(self) -> None:
        self.uniforms = StreamUniforms(self.seed)

    @property
    def hold(self) -> int:
        """Characters held back so that a stop string is matched whole and never sent in part."""
        return max((len(s) for s in self.stop), default=1) - 1

    def admitted(self, now: float) -> None:
        """The stream got its place in the batch: its time limit starts now."""
        self.deadline = now + self.timeout_s

    def add(self, token: Token, now: float) -> bool:
        """Take the next character (worker thread); True when the stream has ended with it."""
        self.made += 1
        self._held.append(token)
        release, reason = self._held, None
        if self.stop:
            tail = "".join(t.char for t in self._held[-self.hold - 1 :])
            matched = next((s for s in self.stop if tail.endswith(s)), None)
            if matched is not None:
                release, reason = self._held[: len(self._held) - len(matched)], "stop"
        if reason is None and self.made >= self.max_tokens:
            reason = "length"
        if reason is None:
            cut = len(self._held) - self.hold
            release, self._held = self._held[:cut], self._held[cut:]
        else:
            self._held = []
        with self.backlog.lock:
            self._ready.extend(release)
            if self.backlog.grow(len(release)) and reason is None:
                reason = "overflow"
                self._drop_ready()
            count = len(self._ready)
            if reason is not None:
                self.finish_reason = reason
        first = not self._woke_at
        if reason is not None or (count and (first or count >= CHUNK_CHARS or now - self._woke_at >= FLUSH_S)):
            self._woke_at = now
            self.notify()
        return reason is not None

    def end(self, reason: str) -> None:
        """End without another character (length 0, cancelled, timed out, overflow, shutting down)."""
        with self.backlog.lock:
            if self.finish_reason is None:
                self.finish_reason = reason
            if reason == "overflow":
                self._drop_ready()
        self.notify()

    def _drop_ready(self) -> None:
        """Forget what the client never read (under the lock): an overflowing request holds nothing."""
        self.backlog.unsent -= len(self._ready)
        self._ready = []

    def take(self) -> tuple[list[Token], str | None]:
        """The characters ready since the last take, and the finish reason once the stream has ended."""
        with self.backlog.lock:
            ready, self._ready = self._ready, []
            self.backlog.unsent -= len(ready)
            return ready, self.finish_reason

    def timed_out(self, now: float) -> bool:
        return now > self.deadline
