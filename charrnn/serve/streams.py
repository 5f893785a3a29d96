"""One choice being generated: its engine row (charrnn.sampling.engine), its time limit, its events.

The worker thread (scheduler.py) hands each stream what its row released; the request's handler
takes them. The two meet under a lock, and the worker wakes the handler only when a burst is worth
sending (the first character, CHUNK_CHARS of them, FLUSH_S since the last wake, or the end), so a
step costs no cross-thread call per stream. What the handler has not taken yet is counted per
request (Backlog): a client that stops reading stops its handler taking, and past `--max-unsent`
characters the request's streams end ("overflow") and drop what they held, instead of growing in memory.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from charrnn.sampling.engine import Row, Token
from charrnn.sampling.generate import CHUNK_CHARS, FLUSH_S

LOG = logging.getLogger("charrnn.serve")


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


@dataclass(eq=False)  # compared by identity (the queue removes this one, not an equal one)
class Stream:
    """One choice: `index` in the response, a prompt already checked against the vocabulary."""

    row: Row  # what the engine steps: prime, settings, seed, length, stops, logprobs
    timeout_s: float  # how long it may generate once admitted (--request-timeout); the queue does not count
    notify: Callable[[], None] = lambda: None  # wakes the handler; set before the stream is queued
    backlog: Backlog = field(default_factory=Backlog)  # shared by the streams of one request
    deadline: float = field(init=False, default=math.inf)  # set when the worker admits the stream
    finish_reason: str | None = None  # "stop", "length", "timeout", "overflow" or "cancelled" once ended
    cancelled: bool = False  # set by the handler (client gone); the worker drops the row at its next step
    _ready: list[Token] = field(default_factory=list)
    _woke_at: float = 0.0

    @property
    def index(self) -> int:
        return self.row.index

    def admitted(self, now: float) -> None:
        """The stream got its place in the batch: its time limit starts now."""
        self.deadline = now + self.timeout_s

    def deliver(self, release: list[Token], reason: str | None, now: float) -> bool:
        """What the row handed out at this step (worker thread); True when the stream has ended."""
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
