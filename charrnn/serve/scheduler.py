"""Continuous batching: one worker thread drives the generation engine of a model for every request.

Each pass of the worker: admit waiting requests while the batch has room (their prompts are fed
through the model's own forward, `torch_backend.feed_prime`, and their rows added to the engine), drop
the rows of streams that were cancelled or ran out of time, and take one engine step (every row
picks with its own settings and seeded uniforms, hands out its characters, and leaves when it
ends). A request therefore joins at the next step and never waits for another's completion, and
a row's text depends only on its prime, seed and settings: the engine is the one `charrnn sample`
runs (charrnn.sampling.engine). A stream's time limit starts when it is admitted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from charrnn.model import CharRNN, State
from charrnn.sampling.engine import Engine
from charrnn.sampling.steppers import make_stepper
from charrnn.sampling.threads import sampling_threads
from charrnn.sampling.torch_backend import cat_state, feed_prime
from charrnn.serve.limits import Limits
from charrnn.serve.streams import Stream
from charrnn.vocab import Vocab

LOG = logging.getLogger("charrnn.serve")


class QueueFull(Exception):
    """More streams are waiting than the queue holds."""


@dataclass(eq=False)  # compared by identity (the queue removes this one, not an equal one)
class Ticket:
    """One request's streams, admitted together (a request's n choices share one prime)."""

    streams: list[Stream]
    notify: Callable[[], None] = lambda: None
    primed: dict[tuple[int, ...], tuple[Tensor, State]] = field(default_factory=dict)  # start ids -> prime_all
    admitted: bool = False
    withdrawn: bool = False
    error: str | None = None
    waiting_since: float = field(default_factory=time.monotonic)


@torch.inference_mode()
def prime_all(
    model: CharRNN, streams: list[Stream], device: torch.device
) -> dict[tuple[int, ...], tuple[Tensor, State]]:
    """Each distinct prompt of a request fed once through the model's forward (`torch_backend.feed_prime`).

    Called from the request's side before it queues, so that a prompt's cost (a few ms for the
    fused forward's per-call overhead, more for a long prompt) does not stall the batch.
    """
    primed: dict[tuple[int, ...], tuple[Tensor, State]] = {}
    for stream in streams:
        key = tuple(stream.row.start)
        if key not in primed and stream.row.empty_end() is None:
            primed[key] = feed_prime(model, stream.row.start, device)
    return primed


class Scheduler:
    """The batch of one model. `submit` from any thread; the worker thread does every step."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        device: torch.device,
        limits: Limits,
        threads: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model.eval()
        self.clock = clock  # what time limits are measured with (a test can hold it still)
        self.device = device
        self.limits = limits
        self.threads = threads
        # the `fast` engine in fp32: numpy's BLAS on the CPU
        self.engine = Engine(make_stepper(model), vocab.chars)
        self.rows: list[Stream] = []  # the stream of each engine row, in the engine's order
        self.queue: deque[Ticket] = deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.closing = False
        self.steps = 0
        self.thread = threading.Thread(target=self._work, name="charrnn-serve-batch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, ticket: Ticket) -> None:
        """Queue a request's streams; raises QueueFull when more than max_queue would wait for a place.

        Queued streams that fit in the batch's free places are admitted at the next step: they do
        not wait, so they do not count against the queue (nor in QueueFull's numbers).
        """
        with self.cond:
            if self.closing:
                raise QueueFull("the server is shutting down")
            free = max(0, self.limits.max_streams - len(self.rows))
            waiting = max(0, self.queued - free)
            if max(0, self.queued + len(ticket.streams) - free) > self.limits.max_queue:
                raise QueueFull(
                    f"the server is busy: {len(self.rows)} of --max-streams {self.limits.max_streams} streams are "
                    f"generating and {waiting} of --max-queue {self.limits.max_queue} places in the queue are taken "
                    f"(this request needs {len(ticket.streams)})"
                )
            self.queue.append(ticket)
            self.queued += len(ticket.streams)
            self.cond.notify()

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a waiting request out of the queue; False if it was admitted meanwhile."""
        with self.cond:
            if ticket.admitted:
                return False
            if not ticket.withdrawn and ticket in self.queue:  # not queued at all when submit refused it
                self.queue.remove(ticket)
                self.queued -= len(ticket.streams)
            ticket.withdrawn = True
            return True

    def close(self) -> None:
        """Stop the worker: waiting requests are refused, active streams end as cancelled."""
        with self.cond:
            self.closing = True
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def cancel_all(self) -> None:
        """Shutting down: every stream ends (as cancelled) at the next step, waiting requests are refused."""
        with self.cond:
            waiting = list(self.queue)
            self.queue.clear()
            self.queued = 0
            for stream in self.rows:
                stream.cancelled = True
            self.cond.notify()
        for ticket in waiting:
            ticket.error = "the server is shutting down"
            ticket.notify()

    @property
    def active(self) -> int:
        return len(self.rows)

    def _work(self) -> None:
        with torch.inference_mode(), sampling_threads(self.threads, "fast", "fp32", self.device):
            while True:
                with self.cond:
                    while not self.closing and not self.rows and not self.queue:
                        self.cond.wait()
                    if self.closing:
                        break
                    tickets = self._take_admitted()
                try:
                    self._admit(tickets)
                    self._drop_ended()
                    if self.rows:
                        self._step()
                except Exception as exc:  # never kill the worker: fail the streams in the batch, keep serving
                    LOG.error("the batched step failed: %s: %s", type(exc).__name__, exc)
                    for stream in self.rows:
                        stream.end("error")
                    for ticket in tickets:
                        ticket.error = f"{type(exc).__name__}: {exc}"
                        ticket.notify()
                    self._keep([])
            self._shut()

    def _take_admitted(self) -> list[Ticket]:
        """Pop the waiting requests that fit in the batch now, first come first served (under the lock)."""
        taken: list[Ticket] = []
        room = self.limits.max_streams - len(self.rows)
        while self.queue and len(self.queue[0].streams) <= room:
            ticket = self.queue.popleft()
            ticket.admitted = True
            self.queued -= len(ticket.streams)
            room -= len(ticket.streams)
            taken.append(ticket)
        return taken

    def _admit(self, tickets: list[Ticket]) -> None:
        """Feed each new prompt once and add its streams' rows to the engine; their time limits start."""
        for ticket in tickets:
            primed = ticket.primed  # usually fed already, off this thread (prime_all)
            joining: list[Stream] = []
            for stream in ticket.streams:
                reason = stream.row.empty_end()
                if reason is not None:
                    stream.end(reason)
                    continue
                key = tuple(stream.row.start)
                if key not in primed:
                    primed[key] = feed_prime(self.model, stream.row.start, self.device)
                joining.append(stream)
            now = self.clock()
            for stream in joining:
                stream.admitted(now)
            if joining:
                lasts = [primed[tuple(s.row.start)][0] for s in joining]
                states = [primed[tuple(s.row.start)][1] for s in joining]
                new_state = states[0]
                for state in states[1:]:
                    new_state = cat_state(new_state, state)
                self.engine.add([s.row for s in joining], torch.cat(lasts), new_state)
                self.rows.extend(joining)
            ticket.notify()

    def _keep(self, keep: list[int]) -> None:
        """Keep only the rows numbered `keep`, in order."""
        self.rows = [self.rows[i] for i in keep]
        self.engine.keep(keep)

    def _drop_ended(self) -> None:
        now = self.clock()
        keep = []
        for row, stream in enumerate(self.rows):
            if stream.cancelled:
                stream.end("cancelled")
            elif stream.backlog.over:  # another stream of its request passed --max-unsent
                stream.end("overflow")
            elif stream.timed_out(now):
                stream.end("timeout")
            else:
                keep.append(row)
        self._keep(keep)

    def _step(self) -> None:
        """One engine step: each row's characters to its stream; the rows of ended streams leave."""
        owner = {id(stream.row): stream for stream in self.rows}
        now = self.clock()
        overflowed = False
        for row, tokens, reason in self.engine.step():
            ended = owner[id(row)].deliver(tokens, reason, now)
            overflowed = overflowed or (ended and reason is None)
        self.steps += 1
        self.rows = [owner[id(row)] for row in self.engine.rows]
        if overflowed:
            self._keep([i for i, stream in enumerate(self.rows) if stream.finish_reason is None])

    def _shut(self) -> None:
        with self.cond:
            waiting = list(self.queue)
            self.queue.clear()
            self.queued = 0
        for ticket in waiting:
            ticket.error = "the server is shutting down"
            ticket.notify()
        for stream in self.rows:
            stream.end("cancelled")
        self._keep([])
