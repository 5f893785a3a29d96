"""What one server accepts, with documented defaults (the README and docs/serve.md list them)."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Bounds on what clients may ask of the server; each is a flag of `charrnn serve`."""

    max_body_bytes: int = 1_000_000  # a request body larger than this is refused (413)
    max_prompt_chars: int = 32_768  # characters per prompt (413)
    max_tokens: int = 4096  # the largest `max_tokens` a request may ask for (400)
    default_max_tokens: int = 256  # `max_tokens` when a request does not say (OpenAI's 16 is short for characters)
    max_n: int = 16  # choices per prompt (`n`) (400)
    max_prompts: int = 16  # prompts in one request's list (400)
    max_streams: int = 64  # streams stepped together; more wait in the queue
    max_queue: int = 256  # streams waiting for a place; more are refused at once (429)
    queue_timeout_s: float = 10.0  # how long a request waits for a place before 429
    request_timeout_s: float = 300.0  # a request still generating after this long is ended (504)
    max_json_depth: int = 8  # nesting of the request JSON (400)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_prompt_chars", "max_tokens", "max_n", "max_prompts", "max_streams"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.default_max_tokens <= self.max_tokens:
            raise ConfigError(f"the default max_tokens must be between 0 and --max-tokens ({self.max_tokens})")
        if self.max_queue < 0:
            raise ConfigError(f"--max-queue must not be negative, got {self.max_queue}")
        if not self.queue_timeout_s >= 0 or not self.request_timeout_s > 0:
            raise ConfigError("--queue-timeout must be >= 0 seconds and --request-timeout > 0 seconds")
