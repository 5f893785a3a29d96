"""The app's outer edge, in front of every route: the API key, then one place where failures end.

KeyCheck runs before routing, so with a key set an unknown route is a 401 like any other (the
route list cannot be probed), and it compares the header's own bytes with the key's in constant
time. Edge is the one error edge: whatever a route raises leaves as one log line and OpenAI's
error JSON (a 500), never a traceback; a client that left before its request was read is one
ordinary log line. Both are plain ASGI middleware, so they see every route, the page and 404s.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charrnn.errors import ConfigError
from charrnn.serve.protocol import ApiError

LOG = logging.getLogger("charrnn.serve")
OPEN_PATHS = frozenset({"/health", "/"})  # /health says only whether models are loaded; / is static HTML
KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))  # visible ASCII: what any client sends unchanged


def check_key(key: str) -> bytes:
    """The key's bytes, or a ConfigError when no HTTP client could send it so that it matches.

    Header values are ASCII on the wire (clients refuse or mangle other characters) and lose spaces
    at either end, so a key outside visible ASCII could never match: refuse it at start-up.
    """
    if not key or not set(key) <= KEY_CHARS:
        raise ConfigError(
            "--api-key (or CHARRNN_API_KEY) must be visible ASCII with no spaces, accents or control characters: "
            "an HTTP header cannot carry any other key unchanged, so no client could match it; "
            "pick another (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return key.encode("ascii")


def key_matches(headers: list[tuple[bytes, bytes]], key: bytes) -> bool:
    """Whether `Authorization: Bearer KEY` carries exactly the key's bytes (constant-time comparison)."""
    value = next((v for name, v in headers if name.lower() == b"authorization"), b"")
    scheme, _, given = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(b" \t"), key)


async def send_error(send: Send, error: ApiError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error.body()).encode()
    start: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": error.status, "headers": start + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class KeyCheck:
    """401 for a request without the key, on every path but /health and the page, before any routing."""

    def __init__(self, app: ASGIApp, key: bytes | None) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed(scope):
            await self.app(scope, receive, send)
        else:
            error = ApiError(401, "missing or wrong API key: send `Authorization: Bearer KEY`", code="invalid_api_key")
            await send_error(send, error, [(b"www-authenticate", b"Bearer")])

    def allowed(self, scope: Scope) -> bool:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return True
        return key_matches(scope["headers"], self.key)


class Edge:
    """The one place an unexpected failure ends: one log line, a 500 in OpenAI's shape, the server goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        progress = {"started": False, "complete": False}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                progress["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress["complete"] = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            LOG.info("a client disconnected before its request was read (%s %s)", scope["method"], scope["path"])
        except Exception as exc:
            LOG.error("unexpected %s on %s %s: %s", type(exc).__name__, scope["method"], scope["path"], one_line(exc))
            if not progress["started"]:
                await send_error(send, ApiError(500, "internal error; the server is still up"))
            elif not progress["complete"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})  # end what was sent


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one short line (a log line must not be split or swollen by what it quotes)."""
    text = " ".join(str(exc).split()) or "-"
    return text if len(text) <= limit else text[: limit - 3] + "..."
