"""Continuous batching: one worker thread steps every active stream of a model together.

Each pass of the worker: admit waiting requests while the batch has room (their prompts are fed
through the model's own forward, `generate.feed_prime`, and their rows appended to the batched
stepper), drop the rows of streams that were cancelled or ran out of time, pick one character per
row with `pick` and the row's own seeded uniform, hand each character to its stream, drop the rows
that ended, and advance the rest by one batched step. A request therefore joins at the next step
and never waits for another's completion, and a row's text depends only on its seed and settings:
the same arithmetic, in the same order, as `charrnn sample` (charrnn.sampling.generate._run).
A stream's time limit starts when it is admitted (the queue has its own timeout).
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
from charrnn.sampling.generate import feed_prime
from charrnn.sampling.pick import SampleSettings, pick
from charrnn.sampling.steppers import make_stepper
from charrnn.sampling.threads import sampling_threads
from charrnn.serve.limits import Limits
from charrnn.serve.streams import Stream, Token
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


def cat_state(a: State, b: State) -> State:
    """Two batches of recurrent state side by side: [L, N1, H] + [L, N2, H] -> [L, N1+N2, H]."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple)
        return tuple(torch.cat([x, y.to(x)], dim=1) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
    assert isinstance(b, torch.Tensor)
    return torch.cat([a, b.to(a)], dim=1)


@torch.inference_mode()
def prime_all(
    model: CharRNN, streams: list[Stream], device: torch.device
) -> dict[tuple[int, ...], tuple[Tensor, State]]:
    """Each distinct prompt of a request fed once through the model's forward (`generate.feed_prime`).

    Called from the request's side before it queues, so that a prompt's cost (a few ms for the
    fused forward's per-call overhead, more for a long prompt) does not stall the batch.
    """
    primed: dict[tuple[int, ...], tuple[Tensor, State]] = {}
    for stream in streams:
        key = tuple(stream.start)
        if key not in primed and stream.max_tokens > 0:
            primed[key] = feed_prime(model, stream.start, device)
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
        self.chars = vocab.chars
        self.device = device
        self.limits = limits
        self.threads = threads
        self.stepper = make_stepper(model)  # the `fast` engine in fp32: numpy's BLAS on the CPU
        self.rows: list[Stream] = []
        self.logits: Tensor | None = None  # [len(rows), V]: the next pick of each row
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
                    self.rows, self.logits = [], None
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
        """Feed each new prompt once and append its streams' rows to the batch; their time limits start."""
        for ticket in tickets:
            primed = ticket.primed  # usually fed already, off this thread (prime_all)
            joining: list[Stream] = []
            for stream in ticket.streams:
                if stream.max_tokens == 0:
                    stream.end("length")
                    continue
                key = tuple(stream.start)
                if key not in primed:
                    primed[key] = feed_prime(self.model, stream.start, self.device)
                joining.append(stream)
            now = self.clock()
            for stream in joining:
                stream.admitted(now)
            if joining:
                lasts = [primed[tuple(s.start)][0] for s in joining]
                states = [primed[tuple(s.start)][1] for s in joining]
                new_state = states[0]
                for state in states[1:]:
                    new_state = cat_state(new_state, state)
                self._append(joining, torch.cat(lasts), new_state)
            ticket.notify()

    def _append(self, streams: list[Stream], logits: Tensor, state: State) -> None:
        if self.rows:
            state = cat_state(self.stepper.state(), state)  # type: ignore[attr-defined]
            assert self.logits is not None
            logits = torch.cat([self.logits, logits.to(self.logits)])
        self.stepper.load_state(state)
        self.rows.extend(streams)
        self.logits = logits

    def _keep(self, keep: list[int]) -> None:
        """Keep only the rows numbered `keep`, in order."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.logits = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.stepper.select(index)
        assert self.logits is not None
        self.logits = self.logits.index_select(0, index.to(self.logits.device))

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
        """One character for every row, then one batched step for the rows that go on."""
        logits = self.logits
        assert logits is not None
        rows = self.rows
        uniforms = torch.tensor([s.uniforms.next() for s in rows], dtype=torch.float32)
        groups: dict[SampleSettings, list[int]] = {}
        for row, stream in enumerate(rows):
            groups.setdefault(stream.settings, []).append(row)
        if len(groups) == 1:
            ids = pick(logits, rows[0].settings, uniforms)
        else:
            ids = torch.empty(len(rows), dtype=torch.long, device=logits.device)
            for settings, members in groups.items():
                index = torch.tensor(members, dtype=torch.long)
                picked = pick(logits.index_select(0, index.to(logits.device)), settings, uniforms[index])
                ids[index.to(ids.device)] = picked.to(ids)
        tokens = self._tokens(logits, ids)
        now = self.clock()
        keep = [row for row, stream in enumerate(rows) if not stream.add(tokens[row], now)]
        self.steps += 1
        if len(keep) < len(rows):
            self._keep(keep)
            if not keep:
                return
            ids = ids.index_select(0, torch.tensor(keep, dtype=torch.long, device=ids.device))
        self.logits = self.stepper.step(ids)

    def _tokens(self, logits: Tensor, ids: Tensor) -> list[Token]:
        """Each row's character, with its log-probability (under temperature 1) where the row asks for it."""
        chars = self.chars
        picked = ids.tolist()
        tokens = [Token(chars[i]) for i in picked]
        wanting = [row for row, s in enumerate(self.rows) if s.logprobs is not None]
        if not wanting:
            return tokens
        index = torch.tensor(wanting, dtype=torch.long, device=logits.device)
        logp = torch.log_softmax(logits.index_select(0, index).float(), dim=-1).cpu()
        widest = max(self.rows[row].logprobs or 0 for row in wanting)
        top_v, top_i = logp.topk(min(widest, logp.size(1)), dim=-1) if widest else (None, None)
        for k, row in enumerate(wanting):
            count = self.rows[row].logprobs or 0
            top = None
            if count and top_v is not None and top_i is not None:
                top = {chars[j]: v for j, v in zip(top_i[k, :count].tolist(), top_v[k, :count].tolist(), strict=True)}
            tokens[row] = Token(chars[picked[row]], float(logp[k, picked[row]]), top)
        return tokens

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
        self.rows, self.logits = [], None
