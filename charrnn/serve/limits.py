"""What one server accepts and how long it waits, with documented defaults (docs/serve.md lists them all)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from charrnn.errors import ConfigError

LIMITS, CONNECTIONS = "Limits", "Connections"


@dataclass(frozen=True)
class LimitFlag:
    """How a limit is a `charrnn serve` flag: its help, its help panel, its least value."""

    help: str
    panel: str
    minimum: float


def limit(default: Any, help: str, panel: str, minimum: float) -> Any:
    return field(default=default, metadata={"flag": LimitFlag(help, panel, minimum)})


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may ask of the server and hold in it; most are flags of `charrnn serve`."""

    max_body_bytes: int = limit(1_000_000, "Bytes per request body (413 beyond).", LIMITS, 1)
    max_prompt_chars: int = limit(32_768, "Characters per prompt (413 beyond).", LIMITS, 1)
    max_tokens: int = limit(4096, "Largest max_tokens (characters) a request may ask for.", LIMITS, 1)
    default_max_tokens: int = 256  # `max_tokens` when a request does not say (OpenAI's 16 is short for characters)
    max_n: int = limit(16, "Choices per prompt (n).", LIMITS, 1)
    max_prompts: int = 16  # prompts in one request's list (400)
    max_streams: int = limit(
        64, "Streams generated together; more wait in the queue.", LIMITS, 1
    )  # n x prompts must fit
    max_queue: int = limit(256, "Streams that may wait for a place; more get 429.", LIMITS, 0)
    queue_timeout_s: float = limit(10.0, "Seconds a request may wait for a place before 429.", LIMITS, 0.0)
    request_timeout_s: float = limit(300.0, "Seconds a request may generate before it is ended.", LIMITS, 0.001)  # 504
    max_unsent: int = limit(
        16_384, "Characters a request may have waiting for its client to read; beyond, it is ended.", LIMITS, 1
    )
    max_json_depth: int = 8  # nesting of the request JSON (400)
    # The connection, below HTTP's routes (charrnn.serve.connection):
    max_connections: int = limit(512, "Open connections; one more gets 503.", CONNECTIONS, 1)
    header_timeout_s: float = limit(
        10.0, "Seconds a request's line and headers may take to arrive (then 408).", CONNECTIONS, 0.001
    )
    body_timeout_s: float = limit(
        30.0, "Seconds a request's body may take after its headers (then 408).", CONNECTIONS, 0.001
    )
    send_timeout_s: float = limit(
        60.0, "Seconds a client may read nothing while output waits (then disconnected).", CONNECTIONS, 0.001
    )
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


def flag_fields() -> dict[str, LimitFlag]:
    """The limits that are `charrnn serve` flags, by field name."""
    return {f.name: f.metadata["flag"] for f in fields(Limits) if "flag" in f.metadata}


def flag(name: str) -> str:
    """The `charrnn serve` flag of a field: max_queue -> max-queue, header_timeout_s -> header-timeout."""
    return name.removesuffix("_s").removesuffix("_bytes").removesuffix("_chars").replace("_", "-")
