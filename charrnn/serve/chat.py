"""`POST /v1/chat/completions`: the chat clients people have, talking to a character model.

A character model is no chat model: it continues text. The messages become one plain-text
prompt, each message a `role: content` line and then `assistant:`, which the model continues
through the same engine, controls and errors as `/v1/completions`. Unless the client sends its own
`stop`, the reply ends where the model starts the next `user:` line (or at `max_tokens`).

    system: You are a poet.
    user: Write about the sea.
    assistant:
"""

from __future__ import annotations

from typing import Any

from charrnn.serve.limits import Limits
from charrnn.serve.protocol import ApiError, CompletionRequest, parse_completion

ROLES = ("system", "developer", "user", "assistant", "tool")
DEFAULT_STOP = "\nuser:"
MAX_MESSAGES = 256


def render(messages: object, limits: Limits) -> str:
    """The prompt the model continues: `role: content` lines, then `assistant:`."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list of {role, content} objects", "messages")
    if len(messages) > MAX_MESSAGES:
        raise ApiError(400, f"at most {MAX_MESSAGES} messages per request", "messages")
    lines = []
    for number, message in enumerate(messages):
        where = f"messages[{number}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"`{where}` must be an object with `role` and `content`", "messages")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ApiError(400, f"`{where}.role` must be one of {', '.join(ROLES)}", "messages")
        lines.append(f"{role}: {text_of(content, where)}")
    prompt = "\n".join(lines) + "\nassistant:"
    if len(prompt) > limits.max_prompt_chars:
        raise ApiError(413, f"the messages make a prompt longer than --max-prompt ({limits.max_prompt_chars}) "
                       "characters", "messages", "prompt_too_long")  # fmt: skip
    return prompt


def text_of(content: object, where: str) -> str:
    """A message's text: a string, or OpenAI's list of parts of which only text parts are allowed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        texts = [p.get("text") for p in content]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise ApiError(400, f"`{where}.content` must be text (a string, or a list of text parts)", "messages")


def parse_chat(data: dict[str, Any], limits: Limits) -> CompletionRequest:
    """The chat body as a completion request over the rendered prompt (`max_completion_tokens` is `max_tokens`)."""
    for field in ("logprobs", "top_logprobs", "tools", "functions"):
        if data.get(field) not in (None, False, []):
            raise ApiError(400, f"`{field}` is not supported for chat by this server; use /v1/completions", field)
    body = dict(data)
    if body.get("max_completion_tokens") is not None:
        if body.get("max_tokens") is not None:
            raise ApiError(400, "send `max_tokens` or `max_completion_tokens`, not both", "max_completion_tokens")
        body["max_tokens"] = body.pop("max_completion_tokens")
    if body.get("stop") is None:
        body["stop"] = [DEFAULT_STOP]
    body["echo"] = False
    body.setdefault("unknown", "skip")  # the template's own ":" may be outside the vocabulary
    prompt = render(data.get("messages"), limits)
    return parse_completion(body, limits, (prompt,))


def message(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": None,
            "finish_reason": finish_reason}  # fmt: skip


def delta(index: int, text: str, first: bool, finish_reason: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"content": text}
    if first:
        part["role"] = "assistant"
    return {"index": index, "delta": part, "logprobs": None, "finish_reason": finish_reason}
