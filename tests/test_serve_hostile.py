"""A real `charrnn serve` against hostile clients and hostile start-up conditions.

A taken port, keys no client could send, run directories not named in UTF-8, slow heads and
bodies, clients that stop reading or leave mid-upload, too many connections, plain HTTP off
loopback, and TLS. Each server here gets small limits (--header-timeout 0.5 and the like) so
that what it promises is seen in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from tests.serve_server import Server, free_port, start_server  # noqa: E402

ODD = "run\ufffd"  # how the server names a run directory called b"run\xff"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until `condition()` holds; fail after `timeout` seconds (a deadline, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout:g}s: {what}"
        time.sleep(0.05)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def read_all(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closing)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def error_in(response: bytes, status: int) -> dict[str, str]:
    """The OpenAI-shaped error of a raw HTTP response that must have `status`."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response[:300]
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture(scope="module")
def odd_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained run in a directory whose name is not UTF-8 (byte 0xff)."""
    root = tmp_path_factory.mktemp("odd")
    run = Path(os.fsdecode(os.fsencode(root) + b"/run\xff"))
    run.mkdir()
    shutil.copy(trained_run / "best.safetensors", run / "best.safetensors")
    return run


@pytest.fixture(scope="module")
def guarded(odd_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = ("--header-timeout", "0.5", "--body-timeout", "0.5", "--send-timeout", "1", "--max-unsent", "500",
             "--max-tokens", "5000000")  # fmt: skip
    server = start_server(odd_run, tmp_path_factory.mktemp("guarded"), *flags)
    yield server
    stop(server)


def test_a_port_in_use_is_one_line_exit_1_and_never_says_it_is_serving(trained_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "-c", str(trained_run), "--port", str(port), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"charrnn: error: cannot listen on 127.0.0.1:{port}: ") and "--port" in lines[0]


@pytest.mark.parametrize("key", ["clé", " pad "])
def test_a_key_no_client_could_send_is_refused_at_start(trained_run: Path, key: str) -> None:
    result = run_cli("serve", "-c", str(trained_run), "--api-key", key, "--port", str(free_port()), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: --api-key") and "ASCII" in lines[0]


def test_a_run_directory_not_named_in_utf8_is_served(guarded: Server) -> None:
    assert guarded.health()["models"] == [ODD]
    models = httpx.get(f"{guarded.url}/v1/models", timeout=10)
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == [ODD]
    body = {"model": ODD, "prompt": "the ", "max_tokens": 20, "seed": 3}
    completion = httpx.post(f"{guarded.url}/v1/completions", json=body, timeout=30)
    assert completion.status_code == 200 and len(completion.json()["choices"][0]["text"]) == 20
    errors = guarded.stderr.read_text()
    assert f"models: {ODD}" in errors and "Traceback" not in errors


def test_slow_heads_and_bodies_are_answered_408_and_closed(guarded: Server) -> None:
    """--header-timeout and --body-timeout hold: no client keeps a connection by sending slowly or not at all."""
    heads = [b"GET /health HTTP/1.1\r\nHost: x\r\n", b"GET /\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Le"]
    for head in heads:
        with socket.create_connection(guarded.address) as sock:
            sock.sendall(head)
            assert error_in(read_all(sock), 408)["code"] == "header_timeout"
    with socket.create_connection(guarded.address) as silent:
        assert read_all(silent) == b""  # nothing sent: closed without a word
    with socket.create_connection(guarded.address) as sock:
        sock.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mod')
        assert error_in(read_all(sock), 408)["code"] == "body_timeout"  # and closed: read_all returned
    with socket.create_connection(guarded.address) as sock:
        sock.sendall(b"GET /\r\n\r\n")  # no version at all: malformed at once
        assert error_in(read_all(sock), 400)["code"] == "bad_http"
    assert guarded.health()["status"] == "ok"


def silent_stream(sock: socket.socket, address: tuple[str, int]) -> None:
    """Ask for a long streamed answer with logprobs on a socket that will never be read."""
    body = json.dumps({"model": ODD, "prompt": "the", "max_tokens": 5_000_000, "n": 16, "logprobs": 5, "stream": True})
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n{body}".encode())  # fmt: skip


def test_a_client_that_stops_reading_is_ended_at_max_unsent(guarded: Server) -> None:
    """--max-unsent ends the request: its rows leave the batch, logged once."""
    with socket.socket() as sock:
        silent_stream(sock, guarded.address)
        wait_until(lambda: "--max-unsent 500" in guarded.stderr.read_text(), "the request ended at --max-unsent")
        wait_until(lambda: guarded.health()["streams"][ODD]["active"] == 0, "its 16 rows left the batch")
    assert guarded.stderr.read_text().count("--max-unsent") == 1


def test_a_client_that_reads_nothing_is_disconnected_at_send_timeout(odd_run: Path, tmp_path: Path) -> None:
    """Output waiting in the socket for --send-timeout drops the connection (whatever --max-unsent allows:
    the kernel's buffers fill first, however fast the server runs)."""
    flags = ("--send-timeout", "1", "--max-unsent", "100000000", "--max-tokens", "5000000")
    server = start_server(odd_run, tmp_path, *flags)
    try:
        with socket.socket() as sock:
            silent_stream(sock, server.address)
            wait_until(lambda: "--send-timeout" in server.stderr.read_text(), "the silent client was disconnected", 90)
            read_all(sock)  # returns: the server closed the connection
            wait_until(lambda: server.health()["streams"][ODD]["active"] == 0, "its rows left the batch")
    finally:
        stop(server)


def test_a_whole_answer_is_not_bound_by_max_unsent(guarded: Server) -> None:
    """Only a streamed answer can be left unread: a whole one waits for --max-tokens, however long."""
    prompt = "the cat sat on the mat. " * 1000  # its echo is scored before the handler takes any output
    body = {"model": ODD, "prompt": [prompt] * 4, "max_tokens": 1000, "n": 2, "echo": True, "logprobs": 5}
    response = httpx.post(f"{guarded.url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    choices = response.json()["choices"]
    assert len(choices) == 8 and all(len(choice["text"]) >= len(prompt) + 1000 for choice in choices)


def test_a_client_leaving_mid_upload_is_one_ordinary_line(guarded: Server) -> None:
    with socket.create_connection(guarded.address) as sock:
        sock.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"model": ')
    wait_until(lambda: "before its request was read" in guarded.stderr.read_text(), "the disconnect is logged")
    lines = [line for line in guarded.stderr.read_text().splitlines() if "before its request was read" in line]
    assert lines == ["charrnn serve: a client disconnected before its request was read (POST /v1/completions)"]
    assert "unexpected" not in guarded.stderr.read_text()


def test_off_loopback_a_warning_and_the_connection_cap(trained_run: Path, tmp_path: Path) -> None:
    server = start_server(trained_run, tmp_path, "--host", "0.0.0.0", "--api-key", "k3y", "--max-connections", "2")
    try:
        lines = server.stderr.read_text().splitlines()
        warnings = [line for line in lines if line.startswith("charrnn serve: warning:")]
        assert len(warnings) == 1 and "0.0.0.0" in warnings[0] and "TLS" in warnings[0]
        assert lines.index(warnings[0]) < next(i for i, line in enumerate(lines) if "models:" in line)
        held: list[socket.socket] = []
        try:
            while len(held) < 2:  # two connections the server has answered (one closing late may count first)
                sock = socket.create_connection(server.address, timeout=20)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(4096).startswith(b"HTTP/1.1 200"):
                    held.append(sock)
                else:
                    sock.close()
            with socket.create_connection(server.address) as third:
                assert error_in(read_all(third), 503)["code"] == "too_many_connections"
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: server.health()["status"] == "ok", "a place frees once the two close")
    finally:
        stop(server)
    assert server.stderr.read_text().count("--max-connections 2 reached") >= 1


def self_signed(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_flags_serve_https(trained_run: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = start_server(trained_run, tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), ca=cert)
    try:
        body = {"model": "run", "prompt": "the ", "max_tokens": 10}
        answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30, verify=server.verify)
        assert answer.status_code == 200 and len(answer.json()["choices"][0]["text"]) == 10
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url.replace("https", "http") + "/health", timeout=10)  # no plain HTTP on that port
    finally:
        stop(server)
    errors = server.stderr.read_text()
    assert f"charrnn serve: {server.url}" in errors and "warning" not in errors


def test_a_certificate_that_does_not_load_is_one_line_exit_2(trained_run: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [(["--ssl-certfile", str(junk)], f"cannot use --ssl-certfile {junk}: "),
             (["--ssl-certfile", str(tmp_path / "missing.pem")], "No such file"),
             (["--ssl-keyfile", str(junk)], "--ssl-keyfile needs --ssl-certfile")]  # fmt: skip
    for flags, says in cases:
        result = run_cli("serve", "-c", str(trained_run), "--port", str(free_port()), *flags, timeout=60)
        assert result.returncode == 2, flags
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("charrnn: error: ") and says in lines[0], lines
