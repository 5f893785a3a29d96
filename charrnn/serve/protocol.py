"""OpenAI's legacy completions contract at the edge: JSON bytes in, a typed request out, or an ApiError.

Everything a client sends is checked here, once: types (a bool is not a number), ranges, finite
numbers (JSON's NaN and Infinity are refused), nesting depth, the limits. Inside, values are typed.
Errors carry OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and a status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from charrnn.errors import ConfigError
from charrnn.sampling.controls import CONTROLS, RunSettings, SampleSettings, build, parse_value
from charrnn.serve.limits import Limits

MAX_STOPS = 4  # OpenAI's limit on stop sequences
MAX_LOGPROBS = 5  # OpenAI's limit on top_logprobs per position


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
    """A checked `POST /v1/completions` body (a chat request becomes one too: charrnn.serve.chat)."""

    model: str
    prompts: tuple[str, ...]
    settings: SampleSettings
    run: RunSettings  # length is max_tokens, num_samples is n
    stream: bool
    echo: bool
    logprobs: int | None
    unknown: Unknown

    @property
    def n(self) -> int:
        return self.run.num_samples


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


def parse_completion(data: dict[str, Any], limits: Limits, prompts: tuple[str, ...] | None = None) -> CompletionRequest:
    """Check every field the server uses; fields it does not know are ignored, as OpenAI's are.

    The generation controls are read as charrnn.sampling.controls declares them (their API names,
    ranges and messages); the server's own limits bound max_tokens, n, best_of and stop."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` is required: a string naming one of GET /v1/models", "model")
    prompts = prompts if prompts is not None else _prompts(data.get("prompt", ""), limits)
    values = controls_of(data, limits)
    values.setdefault("length", limits.default_max_tokens)
    values["keep_stop"] = False  # OpenAI's contract: the stop string is not part of the text
    try:
        settings, run = build(values, "api")
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    streams = run.draws * len(prompts)
    if streams > limits.max_streams:
        raise ApiError(
            400,
            f"n or best_of ({run.draws}) times the number of prompts ({len(prompts)}) must be at most --max-streams "
            f"({limits.max_streams}), the streams the server generates together; ask for fewer",
            "best_of" if run.best_of else "n",
        )
    stream = _bool(data, "stream")
    if stream and run.best_of:
        raise ApiError(400, '`best_of` ranks whole answers, which cannot be streamed; send "stream": false', "best_of")
    unknown = data.get("unknown", "error")
    if unknown not in ("error", "skip"):
        raise ApiError(400, '`unknown` must be "error" or "skip"', "unknown")
    return CompletionRequest(
        model=model,
        prompts=prompts,
        settings=settings,
        run=run,
        stream=stream,
        echo=_bool(data, "echo"),
        logprobs=_int(data, "logprobs", None, 0, MAX_LOGPROBS),
        unknown=Unknown(unknown),
    )


SERVER_BOUNDS = {"length": "max_tokens", "num_samples": "max_n", "best_of": "max_n"}


def controls_of(data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The generation controls a body sets, each parsed under the name the client used for it."""
    values: dict[str, Any] = {}
    for name, spec in CONTROLS.items():
        given = [field for field in (spec.api, *spec.api_aliases) if field and data.get(field) is not None]
        if not given:
            continue
        if len(given) > 1:
            raise ApiError(400, f"`{given[0]}` and `{given[1]}` are the same setting; send one", given[1])
        try:
            value = parse_value(name, data[given[0]], "api")
        except ConfigError as exc:
            raise ApiError(400, str(exc).replace(f"`{spec.api}`", f"`{given[0]}`"), given[0]) from None
        bound = SERVER_BOUNDS.get(name)
        if bound is not None and value > getattr(limits, bound):
            raise ApiError(400, f"`{given[0]}` must be at most --{bound.replace('_', '-')} ({getattr(limits, bound)}), "
                           f"got {value}", given[0])  # fmt: skip
        if name == "stop" and len(value) > MAX_STOPS:
            raise ApiError(400, f"`stop` takes at most {MAX_STOPS} strings", "stop")
        values[name] = value
    choices = data.get("guided_choice")
    if choices is not None:
        if "match" in values:
            raise ApiError(400, "`guided_regex` and `guided_choice` both constrain the text; send one", "guided_choice")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise ApiError(400, "`guided_choice` must be a non-empty list of strings", "guided_choice")
        from charrnn.sampling.constrain import choice_pattern

        values["match"] = choice_pattern(choices)
    return values


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


def _bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be true or false", name)
    return value


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
