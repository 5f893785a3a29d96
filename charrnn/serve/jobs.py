"""One completion request from admission to its last character, independent of the web framework.

A request becomes one Stream per choice (prompt i, choice j: index i*n + j, seed S + j, so each
prompt's choices are `charrnn sample --prime P --seed S -n N`'s samples), queued together on the
model's scheduler. The handler awaits bursts of characters; when the client goes away it cancels
the streams, and the worker drops their rows at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import torch

from charrnn.errors import ConfigError
from charrnn.model import CharRNN
from charrnn.sampling.engine import Row
from charrnn.sampling.generate import new_seed, start_ids
from charrnn.sampling.pick import compile_settings
from charrnn.serve.limits import Limits
from charrnn.serve.protocol import ApiError, CompletionRequest, Unknown
from charrnn.serve.registry import Served
from charrnn.serve.scheduler import QueueFull, Ticket, prime_all
from charrnn.serve.streams import Backlog, Stream, Token
from charrnn.vocab import Vocab, describe_chars

ADMIT_S = 0.05  # the least a request waits for its place (the worker admits at its next step)
POLL_S = 0.25  # how often a waiting handler checks whether its client is still there


def checked_prompt(vocab: Vocab, prompt: str, unknown: Unknown) -> str:
    """The prompt, or a 400 naming its characters outside the vocabulary (dropped with `unknown: skip`)."""
    missing = vocab.unknown(prompt)
    if not missing:
        return prompt
    if unknown is Unknown.SKIP:
        gone = set(missing)
        return "".join(c for c in prompt if c not in gone)
    raise ApiError(
        400,
        f"the prompt uses {len(missing)} character(s) the model never saw: {describe_chars(missing)}; "
        'remove them or send "unknown": "skip"',
        "prompt",
        "unknown_characters",
    )


def prompt_tokens(model: CharRNN, vocab: Vocab, prompt: str, top: int, device: torch.device) -> list[Token]:
    """The prompt's own characters with their log-probabilities (the first has none), for echo + logprobs."""
    if not prompt:
        return []
    ids = [int(i) for i in vocab.encode(prompt)]
    with torch.inference_mode():
        logits, _ = model(torch.tensor([ids], dtype=torch.long, device=device))
        logp = torch.log_softmax(logits[0, :-1].float(), dim=-1).cpu()
    tokens = [Token(prompt[0])]
    top_v, top_i = logp.topk(min(top, logp.size(1)), dim=-1) if top else (None, None)
    for k, char_id in enumerate(ids[1:]):
        best = None
        if top_v is not None and top_i is not None:
            best = {vocab.chars[j]: v for j, v in zip(top_i[k].tolist(), top_v[k].tolist(), strict=True)}
        tokens.append(Token(prompt[k + 1], float(logp[k, char_id]), best))
    return tokens


@dataclass
class Job:
    """A checked request on one served model."""

    request: CompletionRequest
    served: Served
    limits: Limits
    prompts: list[str] = field(init=False)
    streams: list[Stream] = field(init=False)
    ticket: Ticket = field(init=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        vocab = self.served.opened.vocab
        req = self.request
        self.prompts = [checked_prompt(vocab, p, req.unknown) for p in req.prompts]
        try:
            compiled = compile_settings(req.settings, vocab.chars, "api")
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        run = req.run
        draws = run.draws
        base = new_seed() if run.seed is None else run.seed
        # only a streamed answer can be left unread; a whole one is bounded by --max-tokens (docs/serve.md)
        backlog = Backlog(self.limits.max_unsent if req.stream else None, len(self.prompts) * draws)
        loop = asyncio.get_running_loop()
        wake = self.wake

        def notify() -> None:
            loop.call_soon_threadsafe(wake.set)

        self.streams = [
            Stream(Row(i * draws + j, start_ids(vocab, prompt), compiled, base + j, run.length, run.stop,
                       run.keep_stop, req.logprobs, scored=run.best_of is not None),
                   self.limits.request_timeout_s, notify=notify, backlog=backlog)
            for i, prompt in enumerate(self.prompts)
            for j in range(draws)
        ]  # fmt: skip
        self.ticket = Ticket(self.streams, notify=notify)

    def prompt_of(self, stream: Stream) -> str:
        return self.prompts[stream.index // self.request.run.draws]

    async def admit(self) -> None:
        """Queue the streams and wait for their place in the batch: 429 when none comes in time."""
        scheduler = self.served.scheduler
        opened = self.served.opened
        self.ticket.primed = await asyncio.to_thread(prime_all, opened.model, self.streams, opened.device)
        try:
            scheduler.submit(self.ticket)
        except QueueFull as exc:
            raise ApiError(429, f"{exc}; retry later", code="rate_limit_exceeded", kind="rate_limit_error") from None
        give_up = time.monotonic() + self.limits.queue_timeout_s
        while not self.ticket.admitted and self.ticket.error is None:
            left = give_up - time.monotonic()
            with contextlib.suppress(asyncio.TimeoutError):  # at least one wait: the worker admits at its next step
                await asyncio.wait_for(self.wake.wait(), timeout=max(left, ADMIT_S))
            self.wake.clear()
            if self.ticket.admitted or self.ticket.error is not None:
                break
            if time.monotonic() >= give_up and scheduler.withdraw(self.ticket):
                raise ApiError(
                    429,
                    f"all --max-streams {self.limits.max_streams} streams stayed busy for "
                    f"--queue-timeout {self.limits.queue_timeout_s:g}s; retry later",
                    code="rate_limit_exceeded",
                    kind="rate_limit_error",
                )
        if self.ticket.error is not None:
            raise ApiError(503, self.ticket.error, code="unavailable")

    async def echoes(self) -> list[list[Token]]:
        """Each prompt's own tokens (with log-probabilities when asked for), for `echo`."""
        opened = self.served.opened
        top = self.request.logprobs or 0
        if self.request.logprobs is None:
            return [[Token(c) for c in p] for p in self.prompts]
        return [
            await asyncio.to_thread(prompt_tokens, opened.model, opened.vocab, p, top, opened.device)
            for p in self.prompts
        ]

    async def bursts(
        self, disconnected: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[list[tuple[Stream, list[Token], str | None]]]:
        """What the streams produced since the last burst, until every stream has ended."""
        pending = list(self.streams)
        while pending:
            with contextlib.suppress(asyncio.TimeoutError):  # on time out, look anyway: wakes may coalesce
                await asyncio.wait_for(self.wake.wait(), timeout=POLL_S)
            self.wake.clear()
            burst = []
            for stream in pending:
                tokens, reason = stream.take()
                if tokens or reason is not None:
                    burst.append((stream, tokens, reason))
            ended = {id(stream) for stream, _, reason in burst if reason is not None}
            pending = [s for s in pending if id(s) not in ended]
            if burst:
                yield burst
            if pending and await disconnected():
                self.cancel()
                return

    def cancel(self) -> None:
        """The client is gone: stop its streams (or take them out of the queue)."""
        self.served.scheduler.withdraw(self.ticket)
        for stream in self.streams:
            stream.cancelled = True
