"""Starting a real `charrnn serve` subprocess on a free loopback port (for the serve tests)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    stderr: Path
    verify: ssl.SSLContext | bool = True

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10, verify=self.verify).json()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.split("://")[1].split(":")
        return host, int(port)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(run: Path, tmp: Path, *flags: str, ca: Path | None = None) -> Server:
    """The server on a free port, once /health answers 200; over HTTPS, trusting `ca`, when it is given."""
    port = free_port()
    stderr = tmp / f"serve-{port}.err"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", "-c", str(run), "--port", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        env=env,
    )
    scheme, verify = ("http", True) if ca is None else ("https", ssl.create_default_context(cafile=str(ca)))
    server = Server(process, f"{scheme}://127.0.0.1:{port}", stderr, verify)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, stderr.read_text()
        assert time.monotonic() < deadline, "the server did not come up"
        try:
            if httpx.get(f"{server.url}/health", timeout=2, verify=verify).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
