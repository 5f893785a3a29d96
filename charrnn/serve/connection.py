"""Below the routes: uvicorn's h11 protocol with the connection limits of `Limits`.

uvicorn has a keep-alive timeout and a header size limit (h11's), which server.py sets, but no
limit on how long a request's head may take to arrive, nor on a client that stops reading, and
its `limit_concurrency` answers in plain text. This protocol adds, per connection:

- a head deadline: while no request is being answered, the next request line and headers must
  arrive within --header-timeout of the connection opening or of the previous response's end
  (408 in OpenAI's shape when part of a head came, then closed; an idle connection just closes);
- a send deadline: a client that reads nothing for --send-timeout while output waits for it is
  disconnected (the handler sees the disconnect and its request leaves the batch);
- a cap: past --max-connections open connections a new one is answered 503 and closed;
- malformed HTTP is a 400 in OpenAI's shape rather than uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from charrnn.serve.limits import Limits
from charrnn.serve.protocol import ApiError

LOG = logging.getLogger("charrnn.serve")
REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def canned(error: ApiError) -> bytes:
    """A whole HTTP/1.1 response carrying `error`, for answers written before or outside h11's cycle."""
    body = json.dumps(error.body()).encode()
    head = (f"HTTP/1.1 {error.status} {REASONS[error.status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


class GuardedH11(H11Protocol):
    """uvicorn's H11Protocol plus the head and send deadlines and the connection cap."""

    LIMITS: ClassVar[Limits] = Limits()
    refusing: ClassVar[bool] = False  # whether the cap is being hit (logged once per episode)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_deadline: asyncio.TimerHandle | None = None
        self.send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        if len(self.connections) > self.LIMITS.max_connections:
            if not cls.refusing:
                cls.refusing = True
                LOG.warning("--max-connections %d reached: new connections get 503 until some close",
                            self.LIMITS.max_connections)  # fmt: skip
            message = f"the server has --max-connections {self.LIMITS.max_connections} open connections; retry later"
            transport.write(canned(ApiError(503, message, code="too_many_connections")))
            transport.close()
            return
        cls.refusing = False
        self.watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.head_deadline, self.send_deadline):
            if timer is not None:
                timer.cancel()
        self.head_deadline = self.send_deadline = None
        super().connection_lost(exc)

    def watch_head(self) -> None:
        """Run the head deadline while no request is being answered; stop it once one is."""
        answering = self.cycle is not None and not self.cycle.response_complete
        if answering or self.transport.is_closing():
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None
        elif self.head_deadline is None:
            self.head_deadline = self.loop.call_later(self.LIMITS.header_timeout_s, self.head_timed_out)

    def head_timed_out(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        partial = self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        if partial:
            limit = self.LIMITS.header_timeout_s
            message = f"the request line and headers did not arrive within --header-timeout {limit:g}s"
            self.transport.write(canned(ApiError(408, message, code="header_timeout")))
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_deadline is None:
            self.send_deadline = self.loop.call_later(self.LIMITS.send_timeout_s, self.send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_deadline is not None:
            self.send_deadline.cancel()
            self.send_deadline = None

    def send_timed_out(self) -> None:
        self.send_deadline = None
        LOG.info("a client read nothing for --send-timeout %gs while output waited; disconnected it",
                 self.LIMITS.send_timeout_s)  # fmt: skip
        self.transport.abort()  # close() would wait for the unread output to be sent

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and not self.cycle.response_complete:  # a response is under way: just close
            self.transport.close()
            return
        message = f"not a valid HTTP/1.1 request (or its line and headers pass {self.LIMITS.max_header_bytes} bytes)"
        self.transport.write(canned(ApiError(400, message, code="bad_http")))
        self.transport.close()


def protocol_for(limits: Limits) -> type[asyncio.Protocol]:
    """The protocol class uvicorn builds each connection with, bound to this server's limits."""

    class Bound(GuardedH11):
        LIMITS = limits
        refusing = False

    return Bound
