"""The JSON the server answers with: completions, stream chunks, the model list (OpenAI's layouts).

Characters are the tokens: `usage` counts characters, and `logprobs` has one entry per character
(tokens, token_logprobs, top_logprobs, text_offset), log-probabilities under the model's own
distribution (temperature 1), so a character's surprisal is -token_logprob.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from charrnn.serve.streams import Token


def completion_id(chat: bool = False) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + os.urandom(12).hex()


def now() -> int:
    return int(time.time())


@dataclass
class Logprobs:
    """OpenAI's per-token logprobs layout, built one character at a time."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def extend(self, tokens: list[Token], offset: int) -> int:
        """Append `tokens` starting at character `offset` of the choice's text; the offset after them."""
        for token in tokens:
            self.tokens.append(token.char)
            self.token_logprobs.append(token.logprob)
            self.top_logprobs.append(token.top)
            self.text_offset.append(offset)
            offset += len(token.char)
        return offset

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def choice(index: int, text: str, logprobs: Logprobs | None, finish_reason: str | None) -> dict[str, Any]:
    return {
        "text": text,
        "index": index,
        "logprobs": None if logprobs is None else logprobs.to_dict(),
        "finish_reason": finish_reason,
    }


def completion(
    ident: str, created: int, model: str, choices: list[dict[str, Any]], prompt_chars: int, chat: bool = False
) -> dict[str, Any]:
    generated = sum(c.pop("generated", 0) for c in choices)
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_chars,
            "completion_tokens": generated,
            "total_tokens": prompt_chars + generated,
        },
    }


def sse(body: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: <json>` and a blank line."""
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


DONE = sse("[DONE]")


def chunk(ident: str, created: int, model: str, choice_body: dict[str, Any], chat: bool = False) -> bytes:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return sse({"id": ident, "object": kind, "created": created, "model": model, "choices": [choice_body]})


def model_list(names: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "charrnn"} for name, created in names],
    }
