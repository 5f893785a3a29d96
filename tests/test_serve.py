"""`charrnn serve` in-process: schema, validation, errors, the scheduler's equality with `charrnn sample`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from charrnn.errors import ConfigError, ServeError
from charrnn.sampling import rng
from charrnn.sampling.controls import RunSettings, SampleSettings
from charrnn.sampling.engine import Engine, Row
from charrnn.sampling.generate import generate_many
from charrnn.sampling.pick import choose, compile_settings
from charrnn.serve.app import create_app
from charrnn.serve.edge import key_matches
from charrnn.serve.limits import Limits
from charrnn.serve.protocol import depth
from charrnn.serve.registry import close_models, load_models, model_name
from charrnn.serve.scheduler import QueueFull, Scheduler, Ticket
from charrnn.serve.server import ServeOptions, bind, check_options, is_loopback
from charrnn.serve.streams import Backlog, Stream
from charrnn.store.opening import open_model

KEY = "s3cret-key"


def make_client(run: Path, limits: Limits | None = None, key: str | None = None) -> Iterator[TestClient]:
    limits = limits or Limits()
    app = create_app(limits, key)
    served = load_models([str(run)], "cpu", limits, 1)
    app.state.charrnn.served = served
    try:
        with TestClient(app) as client:
            yield client
    finally:
        close_models(served)


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    yield from make_client(trained_run)


@pytest.fixture(scope="module")
def name(trained_run: Path) -> str:
    return model_name(trained_run / "best.safetensors")


def solo(run: Path, prime: str, length: int, seed: int, **settings: Any) -> str:
    """What `charrnn sample --prime P --length N --seed S` generates (without the prime)."""
    opened = open_model(run)
    run = RunSettings(length=length, seed=seed, keep_stop=False)
    pieces = generate_many(opened.model, opened.vocab, prime, SampleSettings(**settings), run)
    return "".join(p.text for p in pieces)


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of a response that must have `status`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    return error


def post(client: TestClient, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/v1/completions", content=data, headers={"content-type": "application/json", **headers})


# --- the routes -------------------------------------------------------------------------------


def test_health_is_503_until_the_models_are_loaded(trained_run: Path) -> None:
    app: FastAPI = create_app(Limits())
    with TestClient(app) as client:
        assert client.get("/health").status_code == 503
        error_of(client.get("/v1/models"), 503)
        served = load_models([str(trained_run)], "cpu", Limits(), 1)
        try:
            app.state.charrnn.served = served
            health = client.get("/health")
            assert health.status_code == 200
            assert health.json()["models"] == list(served)
        finally:
            close_models(served)


def test_models_lists_the_loaded_run(client: TestClient, name: str) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [name]
    assert client.get(f"/v1/models/{name}").json()["id"] == name
    error_of(client.get("/v1/models/nope"), 404)


def test_completion_schema_and_seeded_text_equal_charrnn_sample(
    client: TestClient, name: str, trained_run: Path
) -> None:
    response = post(client, {"model": name, "prompt": "the ", "max_tokens": 60, "seed": 11, "temperature": 0.9})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == name and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert choice["text"] == solo(trained_run, "the ", 60, 11, temperature=0.9)
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 60, "total_tokens": 64}


def test_n_choices_use_seed_plus_index(client: TestClient, name: str, trained_run: Path) -> None:
    body = post(client, {"model": name, "prompt": ["a ", "the "], "n": 3, "max_tokens": 30, "seed": 5, "top_k": 4})
    choices = body.json()["choices"]
    assert [c["index"] for c in choices] == list(range(6))
    for c in choices:
        prompt = ["a ", "the "][c["index"] // 3]
        assert c["text"] == solo(trained_run, prompt, 30, 5 + c["index"] % 3, top_k=4)


def test_penalties_and_new_controls_are_served_and_equal_charrnn_sample(
    client: TestClient, name: str, trained_run: Path
) -> None:
    """presence/frequency penalties (once refused), min_p and the repetition penalty by either name."""
    body = {"model": name, "prompt": "the ", "max_tokens": 60, "seed": 4, "presence_penalty": 1.5,
            "frequency_penalty": 0.5, "min_p": 0.05, "repeat_penalty": 1.3, "repeat_last_n": 16}  # fmt: skip
    response = post(client, body)
    assert response.status_code == 200, response.text
    (choice,) = response.json()["choices"]
    expected = solo(trained_run, "the ", 60, 4, presence_penalty=1.5, frequency_penalty=0.5, min_p=0.05,
                    repetition_penalty=1.3, penalty_window=16)  # fmt: skip
    assert choice["text"] == expected
    assert expected != solo(trained_run, "the ", 60, 4)  # the penalties really changed the text


def test_range_errors_name_the_field_on_one_line(client: TestClient, name: str) -> None:
    error = error_of(post(client, {"model": name, "temperature": 101}), 400)
    assert error["message"] == "`temperature` must be between 0 and 100, got 101.0" and error["param"] == "temperature"
    error = error_of(post(client, {"model": name, "repeat_penalty": 0}), 400)
    assert "`repeat_penalty`" in error["message"] and "\n" not in error["message"]


def test_stop_ends_the_choice_and_is_not_in_the_text(client: TestClient, name: str, trained_run: Path) -> None:
    full = solo(trained_run, "the ", 200, 3, temperature=0.0)
    stop = full[5:7]
    body = post(client, {"model": name, "prompt": "the ", "max_tokens": 200, "temperature": 0, "stop": [stop, "QQ"]})
    (choice,) = body.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == full[: full.index(stop)]


def test_streaming_sends_chunks_then_done_and_the_same_text(client: TestClient, name: str) -> None:
    request = {"model": name, "prompt": "we ", "max_tokens": 100, "seed": 9, "top_p": 0.9}
    whole = post(client, request).json()["choices"][0]["text"]
    events = []
    with client.stream("POST", "/v1/completions", json={**request, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                assert line.startswith("data: ")
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_logprobs_follow_openais_layout(client: TestClient, name: str) -> None:
    body = post(client, {"model": name, "prompt": "the cat", "max_tokens": 20, "logprobs": 3, "echo": True, "seed": 1})
    choice = body.json()["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith("the cat") and len(choice["text"]) == 27
    assert lp["tokens"] == list(choice["text"])
    assert lp["text_offset"] == list(range(27))
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(v <= 0 for v in lp["token_logprobs"][1:])
    assert all(len(top) == 3 and max(top.values()) <= 0 for top in lp["top_logprobs"][1:])
    plain = post(client, {"model": name, "prompt": "the cat", "max_tokens": 20, "seed": 1}).json()
    assert choice["text"] == "the cat" + plain["choices"][0]["text"]  # logprobs do not change the text


def test_unknown_characters_are_named_or_skipped(client: TestClient, name: str, trained_run: Path) -> None:
    error = error_of(post(client, {"model": name, "prompt": "the ☃ cat"}), 400)
    assert "U+2603" in error["message"] and error["param"] == "prompt"
    body = post(client, {"model": name, "prompt": "the ☃cat", "unknown": "skip", "max_tokens": 10, "seed": 2})
    assert body.json()["choices"][0]["text"] == solo(trained_run, "the cat", 10, 2)


def test_max_tokens_zero_gives_empty_text(client: TestClient, name: str) -> None:
    choice = post(client, {"model": name, "prompt": "a", "max_tokens": 0}).json()["choices"][0]
    assert choice["text"] == "" and choice["finish_reason"] == "length"


# --- hostile and malformed requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "M", "prompt": "a"', None),  # truncated JSON
        (b"\xff\xfe not utf-8", None),
        ("[1, 2]", None),  # not an object
        ('{"model": "M", "temperature": NaN}', None),
        ('{"model": "M", "top_p": Infinity}', None),
        ('{"model": "M", "max_tokens": 1e400}', "max_tokens"),
        ('{"model": "M", "max_tokens": 1' + "0" * 5000 + "}", None),  # beyond Python's int parsing limit
        ({"model": "M", "max_tokens": -1}, "max_tokens"),
        ({"model": "M", "max_tokens": 10**9}, "max_tokens"),
        ({"model": "M", "max_tokens": True}, "max_tokens"),
        ({"model": "M", "max_tokens": "12"}, "max_tokens"),
        ({"model": "M", "temperature": "0.5"}, "temperature"),
        ({"model": "M", "temperature": -0.5}, "temperature"),
        ({"model": "M", "temperature": "hot"}, "temperature"),
        ({"model": "M", "top_p": 0}, "top_p"),
        ({"model": "M", "top_p": 1.5}, "top_p"),
        ({"model": "M", "top_k": 0}, "top_k"),
        ({"model": "M", "n": 0}, "n"),
        ({"model": "M", "n": 17}, "n"),
        ({"model": "M", "seed": -1}, "seed"),
        ({"model": "M", "seed": 2**64}, "seed"),
        ({"model": "M", "stream": "yes"}, "stream"),
        ({"model": "M", "echo": 1}, "echo"),
        ({"model": "M", "logprobs": 6}, "logprobs"),
        ({"model": "M", "stop": ""}, "stop"),
        ({"model": "M", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "M", "stop": [1]}, "stop"),
        ({"model": "M", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "M", "prompt": []}, "prompt"),
        ({"model": "M", "prompt": {"a": 1}}, "prompt"),
        ({"model": "M", "unknown": "ignore"}, "unknown"),
        ({"model": "M", "presence_penalty": 2.5}, "presence_penalty"),
        ({"model": "M", "frequency_penalty": "x"}, "frequency_penalty"),
        ({"model": "M", "min_p": 1.5}, "min_p"),
        ({"model": "M", "repetition_penalty": 0}, "repetition_penalty"),
        ({"model": "M", "repeat_penalty": 0}, "repeat_penalty"),
        ({"model": "M", "repetition_penalty": 1.1, "repeat_penalty": 1.1}, "repeat_penalty"),
        ({"model": "M", "no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"model": "M", "logit_bias": {"e": 101}}, "logit_bias"),
        ({"model": "M", "guided_regex": "("}, "guided_regex"),
        ({"model": "M", "guided_choice": []}, "guided_choice"),
        ({"model": "M", "best_of": 0}, "best_of"),
        ({"model": 7}, "model"),
        ({"prompt": "a"}, "model"),
    ],
)
def test_bad_requests_are_400_in_openais_shape(client: TestClient, name: str, body: Any, param: str | None) -> None:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.replace('"M"', json.dumps(name))
    error = error_of(post(client, body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_deep_json_is_400_not_a_crash(client: TestClient, name: str) -> None:
    error_of(post(client, '{"model": "M", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"), 400)
    error_of(post(client, {"model": name, "x": [[[[[[[[[[1]]]]]]]]]]}), 400)
    assert depth({"a": [1, {"b": []}]}) == 4 and depth(7) == 0
    assert post(client, {"model": name, "max_tokens": 1}).status_code == 200  # still serving


def test_huge_body_and_prompt_are_413(trained_run: Path, name: str) -> None:
    limits = Limits(max_body_bytes=10_000, max_prompt_chars=100)
    for client in make_client(trained_run, limits):
        error_of(post(client, {"model": name, "prompt": "a" * 20_000}), 413)
        error = error_of(post(client, {"model": name, "prompt": "a" * 101}), 413)
        assert error["param"] == "prompt"
        error_of(post(client, {"model": name, "prompt": ["a", "a" * 101]}), 413)
        # A body that lies about its length is still cut off at the limit.
        big = json.dumps({"model": name, "prompt": "a" * 20_000})
        error_of(client.post("/v1/completions", content=iter([big.encode()])), 413)
        assert post(client, {"model": name, "prompt": "a" * 100, "max_tokens": 1}).status_code == 200


def test_unknown_model_and_route_are_404(client: TestClient) -> None:
    error = error_of(post(client, {"model": "../../etc/passwd", "prompt": "a"}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    error_of(client.get("/v2/nothing"), 404)
    error_of(client.get("/v1/completions"), 405)


def test_api_key_is_required_on_every_route_but_health(trained_run: Path, name: str) -> None:
    for client in make_client(trained_run, key=KEY):
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200  # the static page; its calls carry the key
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}, {"authorization": "Basic x"}):
            assert error_of(client.get("/v1/models", headers=headers), 401)["code"] == "invalid_api_key"
            error_of(post(client, {"model": name, "max_tokens": 1}, **headers), 401)
        good = {"authorization": f"Bearer {KEY}"}
        assert client.get("/v1/models", headers=good).status_code == 200
        assert post(client, {"model": name, "max_tokens": 1}, **good).status_code == 200


def test_a_full_batch_queues_then_429(trained_run: Path, name: str) -> None:
    limits = Limits(max_streams=1, max_queue=0, queue_timeout_s=0.0, max_tokens=10**7, max_n=1)
    for client in make_client(trained_run, limits):
        long = {"model": name, "prompt": "a", "max_tokens": 10**7, "stream": True}
        with client.stream("POST", "/v1/completions", json=long) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept: a dropped iterator may close the response
            assert next(lines).startswith("data: ")  # the long stream holds the only place
            error = error_of(post(client, {"model": name, "max_tokens": 1}), 429)
            assert error["type"] == "rate_limit_error"
            assert next(lines) == ""  # the long stream goes on
        # The abandoned stream leaves the batch, and the place is free again.
        wait_for(lambda c=client: c.get("/health").json()["streams"][name]["active"] == 0)
        assert post(client, {"model": name, "max_tokens": 1}).status_code == 200


def test_a_waiting_request_joins_when_a_place_frees(trained_run: Path, name: str) -> None:
    limits = Limits(max_streams=2, queue_timeout_s=30.0)
    for client in make_client(trained_run, limits):
        body = post(client, {"model": name, "prompt": "a", "n": 2, "max_tokens": 300, "seed": 4})
        assert body.status_code == 200  # n fills the batch; admitted whole
        error_of(post(client, {"model": name, "n": 3}), 400)  # could never fit


def test_an_unexpected_failure_is_a_500_in_shape_and_the_server_stays_up(
    client: TestClient, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charrnn.serve import jobs

    def boom(self: object) -> None:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(jobs.Job, "admit", boom)
        error = error_of(post(client, {"model": name, "max_tokens": 1}), 500)
        assert "boom" not in error["message"]
    assert post(client, {"model": name, "max_tokens": 1}).status_code == 200


def test_the_playground_page_is_offline_html(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/completions" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing fetched from elsewhere


# --- the scheduler -------------------------------------------------------------------------------


def test_each_rows_pick_uses_its_own_seed_and_step_whoever_shares_the_batch() -> None:
    """The engine picks row i at uniform rng.uniform(seed_i, made_i): the same id alone or in any batch."""
    chars = [chr(c) for c in range(ord("a"), ord("a") + 20)]
    settings = SampleSettings(temperature=1.2, top_k=12)
    compiled = compile_settings(settings, chars)
    logits = np.random.default_rng(3).standard_normal((6, len(chars))).astype(np.float32) * 2
    rows = [Row(i, [0], compiled, seed, 100) for i, seed in enumerate([3, 4, 5, 3, 2**63, 0])]
    for row, made in zip(rows, [0, 7, 123, 5, 40, 999], strict=True):
        row.made = made

    def picked(order: list[int]) -> list[int]:
        engine = Engine(None, chars)  # type: ignore[arg-type]  # pick() never steps
        engine.rows, engine.logits = [rows[i] for i in order], logits[order].copy()
        return engine.pick().tolist()

    alone = [
        int(choose(logits[i : i + 1].copy(), settings, np.array([rng.uniform(r.seed, r.made)], np.float32))[0])
        for i, r in enumerate(rows)
    ]
    assert picked(list(range(6))) == alone
    assert picked([5, 2, 0, 4, 1, 3]) == [alone[i] for i in (5, 2, 0, 4, 1, 3)]
    assert picked([1]) == [alone[1]] and picked([4, 4]) == [alone[4]] * 2
    assert len(set(alone)) > 1


def test_streams_joining_at_different_steps_with_different_settings_equal_their_solo_runs(trained_run: Path) -> None:
    """Continuous batching changes no stream's text: joins, leaves and mixed settings included."""
    opened = open_model(trained_run)
    scheduler = Scheduler(opened.model, opened.vocab, opened.device, Limits(), threads=1)
    scheduler.start()
    cases = [("the ", 400, 1, SampleSettings()), ("a ", 30, 2, SampleSettings(temperature=0.5, top_k=5)),
             ("", 200, 3, SampleSettings(top_p=0.8)), ("we ", 120, 4, SampleSettings(temperature=0.0)),
             ("the cat", 250, 5, SampleSettings(temperature=1.3))]  # fmt: skip
    try:
        streams = []
        for prime, length, seed, settings in cases:
            start = [int(i) for i in opened.vocab.encode(prime)] if prime else [opened.vocab.index("\n") or 0]
            compiled = compile_settings(settings, opened.vocab.chars, "api")
            stream = Stream(Row(len(streams), start, compiled, seed, length), 60.0)
            scheduler.submit(Ticket([stream]))
            streams.append(stream)
            wait_for(lambda s=stream: s.row.made > 0 or s.finish_reason is not None)  # the next joins mid-way
        texts = [collect(s) for s in streams]
    finally:
        scheduler.close()
    for (prime, length, seed, settings), text in zip(cases, texts, strict=True):
        pieces = generate_many(opened.model, opened.vocab, prime, settings, RunSettings(length=length, seed=seed))
        assert text == "".join(p.text for p in pieces)


def collect(stream: Stream) -> str:
    parts = []
    while True:
        tokens, reason = stream.take()
        parts.extend(t.char for t in tokens)
        if reason is not None:
            assert reason == "length"
            return "".join(parts)
        time.sleep(0.001)


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Poll until `condition()` holds; fail after `timeout` seconds (a deadline, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# --- options -------------------------------------------------------------------------------------


def test_loopback_only_without_a_key(trained_run: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
    with pytest.raises(ConfigError, match="--api-key"):
        check_options(ServeOptions(checkpoints=(str(trained_run),), host="0.0.0.0"))
    check_options(ServeOptions(checkpoints=(str(trained_run),), host="0.0.0.0", api_key=KEY))
    with pytest.raises(ConfigError, match="no such checkpoint"):
        check_options(ServeOptions(checkpoints=(str(trained_run / "missing.safetensors"),)))


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        Limits(max_streams=0)
    with pytest.raises(ConfigError):
        Limits(max_tokens=10, default_max_tokens=20)


def test_two_checkpoints_of_one_name_are_refused(trained_run: Path) -> None:
    with pytest.raises(ConfigError, match="both be served"):
        load_models([str(trained_run), str(trained_run / "best.safetensors")], "cpu", Limits(), 1)
    assert model_name(trained_run / "last.safetensors") == f"{trained_run.name}/last"


def test_a_request_past_its_time_limit_is_504_or_an_error_event(trained_run: Path, name: str) -> None:
    limits = Limits(request_timeout_s=0.3, max_tokens=10**8)
    for client in make_client(trained_run, limits):
        error = error_of(post(client, {"model": name, "max_tokens": 10**8}), 504)
        assert error["code"] == "timeout"
        with client.stream("POST", "/v1/completions", json={"model": name, "max_tokens": 10**8, "stream": True}) as r:
            events = [line for line in r.iter_lines() if line]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["error"]["code"] == "timeout"


def test_cors_is_off_unless_an_origin_is_given(trained_run: Path) -> None:
    preflight = {"origin": "http://example.test", "access-control-request-method": "POST"}
    with TestClient(create_app(Limits())) as client:
        assert "access-control-allow-origin" not in client.options("/v1/completions", headers=preflight).headers
    with TestClient(create_app(Limits(), cors=["http://example.test"])) as client:
        allowed = client.options("/v1/completions", headers=preflight).headers
        assert allowed["access-control-allow-origin"] == "http://example.test"


# --- the one error edge, the key, the queue's numbers, time limits, unread output ----------------


def test_every_route_ends_an_unexpected_failure_as_one_log_line_and_a_500(
    trained_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model name JSON cannot encode (a lone surrogate) breaks every answer: each is one 500, one line."""
    limits = Limits()
    app = create_app(limits)
    served = load_models([str(trained_run)], "cpu", limits, 1)
    app.state.charrnn.served = {"bad\udcff": dataclasses.replace(next(iter(served.values())), name="bad\udcff")}
    request = {"model": "bad\udcff", "prompt": "a", "max_tokens": 3}
    try:
        with TestClient(app) as client, caplog.at_level(logging.INFO, "charrnn.serve"):
            for send in (
                lambda: client.get("/health"),
                lambda: client.get("/v1/models"),
                lambda: post(client, request),
            ):
                caplog.clear()
                error = error_of(send(), 500)
                assert error["type"] == "server_error" and "still up" in error["message"]
                (record,) = caplog.records
                assert record.levelno == logging.ERROR and record.exc_info is None
                assert "\n" not in record.getMessage() and "UnicodeEncodeError" in record.getMessage()
            caplog.clear()
            streamed = json.dumps({**request, "stream": True})  # ASCII: the surrogate travels as an escape
            with client.stream("POST", "/v1/completions", content=streamed) as response:
                events = [line for line in response.iter_lines() if line]
            assert events[-1] == "data: [DONE]"
            assert json.loads(events[-2][6:])["error"]["type"] == "server_error"
            assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
            assert client.get("/").status_code == 200  # still serving
    finally:
        close_models(served)


def test_a_run_directory_not_named_in_utf8_gets_a_name_json_can_carry(tmp_path: Path) -> None:
    run = Path(os.fsdecode(bytes(tmp_path) + b"/run\xff\x07"))
    assert model_name(run / "best.safetensors") == "run\ufffd\ufffd"
    assert model_name(run / "last.safetensors") == "run\ufffd\ufffd/last"
    assert model_name(tmp_path / "poems" / "best.safetensors") == "poems"


def test_unknown_routes_need_the_key_before_they_are_404(trained_run: Path) -> None:
    for client in make_client(trained_run, key=KEY):
        for method, path in (("GET", "/v2/nothing"), ("POST", "/admin"), ("GET", "/v1/completions")):
            error = error_of(client.request(method, path), 401)
            assert error["code"] == "invalid_api_key"
        good = {"authorization": f"Bearer {KEY}"}
        error_of(client.get("/v2/nothing", headers=good), 404)
        error_of(client.get("/v1/completions", headers=good), 405)


def test_a_key_no_client_can_send_is_refused_and_keys_are_compared_as_bytes(trained_run: Path) -> None:
    for key in ("clé", " pad ", "pad ", "a b", "tab\tkey", "line\n"):
        with pytest.raises(ConfigError, match="--api-key"):
            check_options(ServeOptions(checkpoints=(str(trained_run),), api_key=key))
        with pytest.raises(ConfigError, match="--api-key"):
            create_app(Limits(), key)
    check_options(ServeOptions(checkpoints=(str(trained_run),), api_key="k3y-~!_.+/="))
    for header, matches in ((b"Bearer k3y", True), (b"bearer k3y", True), (b"Bearer k3y ", True),
                            (b"Bearer k3y\xe9", False), (b"Bearer k3", False), (b"Basic k3y", False),
                            (b"k3y", False), (b"", False)):  # fmt: skip
        assert key_matches([(b"authorization", header)], b"k3y") is matches, header
    assert not key_matches([], b"k3y")


def test_n_times_prompts_over_max_streams_names_the_flag(trained_run: Path, name: str) -> None:
    for client in make_client(trained_run, Limits(max_streams=4)):
        error = error_of(post(client, {"model": name, "prompt": ["a", "b"], "n": 3}), 400)
        assert "--max-streams" in error["message"] and "(4)" in error["message"] and error["param"] == "n"


def streams_of(run: Path, count: int, max_tokens: int, timeout_s: float = 60.0, **fields: Any) -> list[Stream]:
    opened = open_model(run)
    start = [int(i) for i in opened.vocab.encode("the ")]
    compiled = compile_settings(SampleSettings(), opened.vocab.chars, "api")
    return [Stream(Row(i, start, compiled, 7 + i, max_tokens), timeout_s, **fields) for i in range(count)]


def test_the_queue_counts_only_the_streams_that_wait_and_names_the_flags(trained_run: Path) -> None:
    opened = open_model(trained_run)
    scheduler = Scheduler(opened.model, opened.vocab, opened.device, Limits(max_streams=2, max_queue=3))  # not started
    scheduler.submit(Ticket(streams_of(trained_run, 2, 5)))  # takes the two free places at the next step
    for _ in range(3):
        scheduler.submit(Ticket(streams_of(trained_run, 1, 5)))  # these three wait
    with pytest.raises(QueueFull) as refused:
        scheduler.submit(Ticket(streams_of(trained_run, 1, 5)))
    message = str(refused.value)
    assert "0 of --max-streams 2" in message and "3 of --max-queue 3" in message, message
    scheduler.close()


def test_the_request_timeout_starts_when_the_rows_are_admitted(trained_run: Path) -> None:
    """A request that waited in the queue far longer than its time limit still generates all it asked for."""
    opened = open_model(trained_run)
    now = [1000.0]  # the scheduler's clock, moved only by this test
    scheduler = Scheduler(opened.model, opened.vocab, opened.device, Limits(max_streams=1), clock=lambda: now[0])
    scheduler.start()
    try:
        (holder,) = streams_of(trained_run, 1, 10**9, timeout_s=10.0)
        scheduler.submit(Ticket([holder]))
        wait_for(lambda: holder.row.made > 0)  # the only place is taken
        (waiter,) = streams_of(trained_run, 1, 50, timeout_s=10.0)
        scheduler.submit(Ticket([waiter]))
        now[0] += 100.0  # the waiter has now waited ten times its time limit
        holder.cancelled = True
        assert len(collect(waiter)) == 50  # collect() checks it ended by length, not by timeout
        assert waiter.deadline == now[0] + 10.0
    finally:
        scheduler.close()


def test_a_request_whose_output_is_not_taken_ends_at_max_unsent(
    trained_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opened = open_model(trained_run)
    scheduler = Scheduler(opened.model, opened.vocab, opened.device, Limits())
    scheduler.start()
    backlog = Backlog(limit=40, streams=3)
    streams = streams_of(trained_run, 3, 10**9, backlog=backlog)
    try:
        with caplog.at_level(logging.INFO, "charrnn.serve"):
            scheduler.submit(Ticket(streams))  # nobody takes their characters
            wait_for(lambda: scheduler.active == 0 and all(s.finish_reason for s in streams))
    finally:
        scheduler.close()
    assert [s.take() for s in streams] == [([], "overflow")] * 3  # what was never read was dropped
    assert backlog.unsent == 0 and max(s.row.made for s in streams) < 100
    (record,) = [r for r in caplog.records if "--max-unsent" in r.getMessage()]
    assert "3 stream(s)" in record.getMessage()


def test_bind_takes_ipv6_in_brackets_and_a_taken_port_is_a_serve_error() -> None:
    try:
        sockets = bind("[::1]", 0)
    except ServeError as exc:  # a machine without IPv6: the address, not the name, is the problem
        assert "[::1]:0" in str(exc) and "no such address" in str(exc)
    else:
        assert [s.getsockname()[0] for s in sockets] == ["::1"]
        for sock in sockets:
            sock.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}: another program .* --port"):
            bind("127.0.0.1", port)
