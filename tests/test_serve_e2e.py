"""A real `charrnn serve` subprocess on a free loopback port, driven by the `openai` package and raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from tests.serve_server import Server, free_port, start_server  # noqa: E402


@pytest.fixture(scope="module")
def server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(trained_run, tmp_path_factory.mktemp("serve"), "--max-tokens", "5000000")
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def sample_cli(run: Path, prime: str, length: int, seed: int, *flags: str) -> str:
    """What `charrnn sample` prints for these settings, without the prime."""
    result = run_cli("sample", "-c", str(run), "--prime", prime, "--length", str(length), "--seed", str(seed),
                     "--no-include-prime", *flags)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_startup_prints_the_url_and_models(server: Server) -> None:
    line = server.stderr.read_text()
    assert server.url in line and "models: run" in line


def test_the_openai_client_gets_the_text_charrnn_sample_gives(server: Server, trained_run: Path) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-on-loopback")
    assert [m.id for m in client.models.list().data] == ["run"]
    expected = sample_cli(trained_run, "the ", 120, 7, "--temp", "0.8", "--top-p", "0.95")
    plain = client.completions.create(model="run", prompt="the ", max_tokens=120, seed=7, temperature=0.8, top_p=0.95)
    assert plain.choices[0].text == expected
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 120
    # long enough to outlast a wake-up of the request's handler: what is ready when it wakes is sent
    # as one chunk, and a tiny model makes 120 characters faster than that on an idle machine
    longer = sample_cli(trained_run, "the ", 4000, 7, "--temp", "0.8", "--top-p", "0.95")
    stream = client.completions.create(
        model="run", prompt="the ", max_tokens=4000, seed=7, temperature=0.8, top_p=0.95, stream=True
    )
    chunks = [chunk.choices[0].text for chunk in stream]
    assert len(chunks) > 1 and "".join(chunks) == longer
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="a", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="run", prompt="a", max_tokens=-3)


def test_raw_http_server_sent_events_end_with_done(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"model": "run", "prompt": "a dog", "max_tokens": 200, "stream": True, "seed": 1})
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type", "").startswith("text/event-stream")
    raw = response.read().decode()
    connection.close()
    assert raw.endswith("data: [DONE]\n\n")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    texts = [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]]
    assert len("".join(texts)) == 200


def test_sixteen_parallel_streams_each_equal_their_solo_run(server: Server, trained_run: Path) -> None:
    prompts = ["the ", "a ", "we sing ", "is it "]

    def one(i: int) -> str:
        request = {"model": "run", "prompt": prompts[i % 4], "max_tokens": 400, "seed": 100 + i, "stream": True,
                   "temperature": [1.0, 0.7][i % 2]}  # fmt: skip
        parts = []
        with httpx.stream("POST", f"{server.url}/v1/completions", json=request, timeout=120) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    parts.append(json.loads(line[6:])["choices"][0]["text"])
        return "".join(parts)

    steps_before = server.health()["streams"]["run"]["steps"]
    with ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(one, range(16)))
    steps = server.health()["streams"]["run"]["steps"] - steps_before
    assert steps < 16 * 400  # the streams shared batched steps (one after another would take 6400)
    from charrnn.sampling.controls import RunSettings, SampleSettings
    from charrnn.sampling.generate import generate
    from charrnn.store.opening import open_model

    opened = open_model(trained_run)
    for i, text in enumerate(texts):
        settings = SampleSettings(temperature=[1.0, 0.7][i % 2])
        run = RunSettings(length=400, seed=100 + i)
        solo = "".join(generate(opened.model, opened.vocab, prompts[i % 4], settings, run))
        assert text == solo, i
    assert texts[3] == sample_cli(trained_run, "is it ", 400, 103, "--temp", "0.7")


def test_a_client_that_disconnects_mid_stream_stops_its_stream(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"model": "run", "prompt": "the", "max_tokens": 5_000_000, "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: {" not in received:
            received += sock.recv(4096)
        assert server.health()["streams"]["run"]["active"] == 1  # five million characters take minutes
    deadline = time.monotonic() + 20
    while server.health()["streams"]["run"]["active"] != 0:
        assert time.monotonic() < deadline, "the abandoned stream is still being generated"
        time.sleep(0.05)
    assert server.process.poll() is None


def test_key_required_and_sigterm_exits_0(trained_run: Path, tmp_path: Path) -> None:
    server = start_server(trained_run, tmp_path, "--api-key", "k3y", "--max-tokens", "5000000")
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").completions.create(model="run", prompt="a")
        good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k3y")
        assert good.completions.create(model="run", prompt="a", max_tokens=5).choices[0].text
        stream = good.completions.create(model="run", prompt="a", max_tokens=5_000_000, stream=True)
        next(iter(stream))  # a stream is open when the signal comes
        assert server.stop() == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
    errors = server.stderr.read_text()
    assert "stopped" in errors and "Traceback" not in errors


def test_a_non_loopback_host_needs_a_key(trained_run: Path) -> None:
    result = run_cli("serve", "-c", str(trained_run), "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert b"--api-key" in result.stderr and b"Traceback" not in result.stderr


def test_without_the_extra_the_message_names_it(trained_run: Path) -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.argv = ['charrnn', 'serve']\n"
        "from charrnn.cli.app import main; main()"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert result.returncode == 1
    assert (
        result.stderr.decode().strip()
        == "charrnn: error: charrnn serve needs FastAPI and uvicorn: pip install 'charrnn[serve]'"
    )


def test_a_bad_checkpoint_is_one_line_and_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    result = run_cli("serve", "-c", str(bad), "--port", "0", timeout=60)
    assert result.returncode == 3
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: ") and str(bad) in lines[0]
