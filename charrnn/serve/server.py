"""Running the app under uvicorn: loopback unless a key is set, models loaded after the port is bound
(GET /health says 503 until then), SIGTERM / Ctrl-C stop accepting, let streams finish for a few
seconds, cancel the rest, and return normally (the command exits 0).
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import uvicorn

from charrnn.errors import CharRNNError, ConfigError
from charrnn.serve.app import create_app
from charrnn.serve.limits import Limits
from charrnn.serve.registry import Served, close_models, load_models
from charrnn.store.runs import resolve_checkpoint

GRACE_S = 2.0  # after SIGTERM, how long open streams may run on before they are cancelled
BACKSTOP_S = 10  # ...and how long uvicorn then waits for connections to close before dropping them


@dataclass(frozen=True)
class ServeOptions:
    """Where and how to serve; runtime knobs, never stored in a checkpoint."""

    checkpoints: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors: tuple[str, ...] = ()
    device: str = "cpu"
    threads: int = 1
    limits: Limits = field(default_factory=Limits)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    """Refuse what must not start: a non-loopback address without a key, a missing checkpoint."""
    if not is_loopback(options.host) and not options.api_key:
        raise ConfigError(
            f"--host {options.host} is reachable from other machines; set --api-key KEY (or CHARRNN_API_KEY) to bind it"
        )
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {options.port}")
    for path in options.checkpoints or (None,):
        resolved = resolve_checkpoint(path)
        if not resolved.is_file():
            raise ConfigError(f"-c {path}: no such checkpoint file or run directory")


class Server(uvicorn.Server):
    """uvicorn's server, without re-raising the signal it stopped on (so SIGTERM ends with exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    on_stop: Callable[[], None] = staticmethod(lambda: None)

    def stop(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.on_stop()
        self.handle_exit(sig, frame)


def serve(options: ServeOptions, on_ready: Callable[[str, list[str]], None]) -> None:
    """Serve until SIGTERM / Ctrl-C. `on_ready(url, model names)` once the models are loaded.

    A checkpoint that fails to load stops the server and its error is raised here.
    """
    check_options(options)
    app = create_app(options.limits, options.api_key, options.cors)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=BACKSTOP_S, lifespan="off")  # fmt: skip
    server = Server(config)
    failed: list[CharRNNError] = []
    loaded: list[dict[str, Served]] = []

    def load() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        try:
            served = load_models(options.checkpoints, options.device, options.limits, options.threads)
        except CharRNNError as exc:
            failed.append(exc)
            server.should_exit = True
            return
        loaded.append(served)
        app.state.charrnn.served = served
        host = f"[{options.host}]" if ":" in options.host else options.host
        port = bound_port(server) or options.port
        on_ready(f"http://{host}:{port}", list(served))

    def cancel_streams() -> None:
        for served in loaded:
            for model in served.values():
                model.scheduler.cancel_all()

    def on_stop() -> None:
        timer = threading.Timer(GRACE_S, cancel_streams)
        timer.daemon = True
        timer.start()

    server.on_stop = on_stop
    loader = threading.Thread(target=load, name="charrnn-serve-load", daemon=True)
    loader.start()
    try:
        server.run()
    finally:
        server.should_exit = True
        loader.join(timeout=60)
        for served in loaded:
            close_models(served)
    if failed:
        raise failed[0]


def bound_port(server: uvicorn.Server) -> int | None:
    """The port the server listens on (useful with --port 0)."""
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return None
