"""OpenAI's legacy completions contract at the edge: JSON bytes in, a typed request out, or an ApiError.

Everything a client sends is checked here, once: types (a bool is not a number), ranges, finite
numbers (JSON's NaN and Infinity are refused), nesting depth, the limits. Inside, values are typed.
Errors carry OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and a status.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from charrnn.sampling.generate import MAX_SEED
from charrnn.serve.limits import Limits

MAX_STOPS = 4  # OpenAI's limit on stop sequences
MAX_LOGPROBS = 5  # OpenAI's limit on top_logprobs per position
MAX_TEMPERATURE = 100.0


class ApiError(Exception):
    """A request the server refuses: HTTP status plus OpenAI's error fields."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class Unknown(str, Enum):
    """What to do with prompt characters outside the vocabulary."""

    ERROR = "error"
    SKIP = "skip"


@dataclass(frozen=True)
class CompletionRequest:
    """A checked `POST /v1/completions` body."""

    model: str
    prompts: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float | None
    top_k: int | None
    n: int
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    echo: bool
    logprobs: int | None
    unknown: Unknown


def parse_json(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The body as a JSON object: 413 when too big, 400 when malformed, non-finite or too deep."""
    if len(raw) > limits.max_body_bytes:
        raise body_too_large(limits)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "the JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError, so are huge integers
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    if depth(data) > limits.max_json_depth:
        raise ApiError(400, f"the JSON is nested more than {limits.max_json_depth} levels deep")
    return data


def body_too_large(limits: Limits) -> ApiError:
    return ApiError(413, f"the body is larger than {limits.max_body_bytes} bytes", code="body_too_large")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion (a scalar is 0)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_completion(data: dict[str, Any], limits: Limits) -> CompletionRequest:
    """Check every field the server uses; fields it does not know are ignored, as OpenAI's are."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` is required: a string naming one of GET /v1/models", "model")
    prompts = _prompts(data.get("prompt", ""), limits)
    n = _int(data, "n", 1, 1, limits.max_n)
    if n * len(prompts) > limits.max_streams:
        raise ApiError(
            400,
            f"n ({n}) times the number of prompts ({len(prompts)}) must be at most --max-streams "
            f"({limits.max_streams}), the streams the server generates together; ask for fewer",
            "n",
        )
    top_p = _number(data, "top_p", None)
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ApiError(400, f"`top_p` must be in (0, 1], got {top_p}", "top_p")
    temperature = _number(data, "temperature", 1.0)
    assert temperature is not None
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise ApiError(
            400, f"`temperature` must be between 0 and {MAX_TEMPERATURE:g}, got {temperature}", "temperature"
        )
    top_k = _int(data, "top_k", None, 1, 1 << 31)
    seed = _int(data, "seed", None, 0, MAX_SEED - (n - 1))
    logprobs = _int(data, "logprobs", None, 0, MAX_LOGPROBS)
    unknown = data.get("unknown", "error")
    if unknown not in ("error", "skip"):
        raise ApiError(400, '`unknown` must be "error" or "skip"', "unknown")
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(data, name, 0.0) != 0.0:
            raise ApiError(400, f"`{name}` is not supported by this server; leave it 0", name)
    return CompletionRequest(
        model=model,
        prompts=prompts,
        max_tokens=_int(data, "max_tokens", limits.default_max_tokens, 0, limits.max_tokens),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        n=n,
        stop=_stops(data.get("stop")),
        seed=seed,
        stream=_bool(data, "stream"),
        echo=_bool(data, "echo"),
        logprobs=logprobs,
        unknown=Unknown(unknown),
    )


def _prompts(value: object, limits: Limits) -> tuple[str, ...]:
    if isinstance(value, str):
        prompts: tuple[str, ...] = (value,)
    elif isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        prompts = tuple(value)
    else:
        raise ApiError(
            400, "`prompt` must be a string or a non-empty list of strings (token ids are not supported)", "prompt"
        )
    if len(prompts) > limits.max_prompts:
        raise ApiError(400, f"at most {limits.max_prompts} prompts per request", "prompt")
    for prompt in prompts:
        if len(prompt) > limits.max_prompt_chars:
            raise ApiError(
                413, f"a prompt is longer than {limits.max_prompt_chars} characters", "prompt", "prompt_too_long"
            )
    return prompts


def _stops(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise ApiError(400, f"`stop` must be a non-empty string or a list of up to {MAX_STOPS} of them", "stop")
    return tuple(stops)


def _bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be true or false", name)
    return value


def _number(data: dict[str, Any], name: str, default: float | None) -> float | None:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"`{name}` must be a finite number", name)
    return float(value)


def _int(data: dict[str, Any], name: str, default: int | None, low: int, high: int) -> Any:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"`{name}` must be an integer", name)
    if not low <= value <= high:
        raise ApiError(400, f"`{name}` must be between {low} and {high}, got {value}", name)
    return value
