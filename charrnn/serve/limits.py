"""What one server accepts and how long it waits, with documented defaults (docs/serve.md lists them all)."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may ask of the server and hold in it; most are flags of `charrnn serve`."""

    max_body_bytes: int = 1_000_000  # a request body larger than this is refused (413)
    max_prompt_chars: int = 32_768  # characters per prompt (413)
    max_tokens: int = 4096  # the largest `max_tokens` a request may ask for (400)
    default_max_tokens: int = 256  # `max_tokens` when a request does not say (OpenAI's 16 is short for characters)
    max_n: int = 16  # choices per prompt (`n`) (400)
    max_prompts: int = 16  # prompts in one request's list (400)
    max_streams: int = 64  # streams stepped together; more wait in the queue; n x prompts must fit (400)
    max_queue: int = 256  # streams waiting for a place; more are refused at once (429)
    queue_timeout_s: float = 10.0  # how long a request waits for a place before 429
    request_timeout_s: float = 300.0  # a request still generating this long after it got its place is ended (504)
    max_unsent: int = 16_384  # characters made for one request but not yet taken by its handler; beyond, it ends
    max_json_depth: int = 8  # nesting of the request JSON (400)
    # The connection, below HTTP's routes (charrnn.serve.connection):
    max_connections: int = 512  # open connections; one more is answered 503 and closed
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this (408, closed)
    body_timeout_s: float = 30.0  # ...and its body within this once the headers are in (408)
    send_timeout_s: float = 60.0  # a client that reads nothing this long while output waits is disconnected
    keep_alive_s: int = 5  # an idle connection between requests is closed after this (uvicorn's keep-alive)
    max_header_bytes: int = 16_384  # a request line plus headers larger than this is refused (400; h11's setting)

    def __post_init__(self) -> None:
        counts = ("max_body_bytes", "max_prompt_chars", "max_tokens", "max_n", "max_prompts", "max_streams",
                  "max_unsent", "max_connections", "max_header_bytes")  # fmt: skip
        for name in counts:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.default_max_tokens <= self.max_tokens:
            raise ConfigError(f"the default max_tokens must be between 0 and --max-tokens ({self.max_tokens})")
        if self.max_queue < 0:
            raise ConfigError(f"--max-queue must not be negative, got {self.max_queue}")
        if not self.queue_timeout_s >= 0:
            raise ConfigError(f"--queue-timeout must be >= 0 seconds, got {self.queue_timeout_s}")
        for name in ("request_timeout_s", "header_timeout_s", "body_timeout_s", "send_timeout_s", "keep_alive_s"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"--{flag(name)} must be a positive number of seconds, got {getattr(self, name)}")


def flag(name: str) -> str:
    """The `charrnn serve` flag of a field: max_queue -> max-queue, header_timeout_s -> header-timeout."""
    return name.removesuffix("_s").removesuffix("_bytes").removesuffix("_chars").replace("_", "-")
