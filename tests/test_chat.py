"""`POST /v1/chat/completions`: the messages become one plain-text prompt that the same engine continues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

import charrnn
from charrnn.serve.chat import render
from charrnn.serve.limits import Limits
from charrnn.serve.protocol import ApiError
from charrnn.serve.registry import model_name
from tests.test_serve import make_client


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    yield from make_client(trained_run)


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "is it"}]}]


def test_the_template_is_role_lines_then_assistant() -> None:
    assert render(MESSAGES, Limits()) == "system: be brief\nuser: is it\nassistant:"
    for bad in ([], [{"role": "king", "content": "x"}], [{"role": "user", "content": 3}], "hi"):
        with pytest.raises(ApiError) as caught:
            render(bad, Limits())
        assert caught.value.status == 400 and caught.value.param == "messages"


def test_a_chat_reply_is_the_completion_of_the_rendered_prompt(trained_run: Path, client: TestClient) -> None:
    name = model_name(trained_run / "best.safetensors")
    body = {"model": name, "messages": MESSAGES, "max_tokens": 40, "seed": 5, "temperature": 0.8, "min_p": 0.05}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    (choice,) = data["choices"]
    assert choice["message"]["role"] == "assistant"
    # chat prompts drop characters outside the vocabulary (this one lacks ":" and "y")
    model = charrnn.load(trained_run)
    prompt = "".join(c for c in render(MESSAGES, Limits()) if c in model.vocab)
    assert ":" not in prompt
    expected = model.samples(prompt, length=40, seed=5, temperature=0.8, min_p=0.05,
                                                 stop=["\nuser:"], keep_stop=False)[0]  # fmt: skip
    assert choice["message"]["content"] == expected.text[len(prompt) :]
    assert data["usage"]["completion_tokens"] == len(choice["message"]["content"])


def test_a_streamed_chat_reply_arrives_as_deltas(trained_run: Path, client: TestClient) -> None:
    name = model_name(trained_run / "best.safetensors")
    body = {"model": name, "messages": MESSAGES, "max_completion_tokens": 50, "seed": 5, "stream": True}
    whole = client.post("/v1/chat/completions", json={**body, "stream": False}).json()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_chat_errors_are_openai_errors(trained_run: Path, client: TestClient) -> None:
    name = model_name(trained_run / "best.safetensors")
    cases = [
        ({"model": name}, "messages"),
        ({"model": name, "messages": MESSAGES, "logprobs": True}, "logprobs"),
        ({"model": name, "messages": MESSAGES, "max_tokens": 5, "max_completion_tokens": 5}, "max_completion_tokens"),
        ({"model": name, "messages": MESSAGES, "presence_penalty": 9}, "presence_penalty"),
    ]
    for body, param in cases:
        answer = client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["param"] == param
