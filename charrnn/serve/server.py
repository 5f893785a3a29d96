"""Running the app under uvicorn: loopback unless a key is set, the socket bound here first (a port
in use is one line, exit 1, and nothing says the server is up), models loaded after that (GET
/health says 503 until then), the ready callback only once both are done. SIGTERM / Ctrl-C stop
accepting, let streams finish for a few seconds, cancel the rest, and return normally (exit 0).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import uvicorn

from charrnn.errors import CharRNNError, ConfigError, ServeError
from charrnn.serve.app import create_app
from charrnn.serve.connection import protocol_for
from charrnn.serve.edge import check_key
from charrnn.serve.limits import Limits
from charrnn.serve.registry import Served, close_models, load_models
from charrnn.store.runs import resolve_checkpoint

GRACE_S = 2.0  # after SIGTERM, how long open streams may run on before they are cancelled
BACKSTOP_S = 10  # ...and how long uvicorn then waits for connections to close before dropping them
BACKLOG = 2048  # connections the kernel holds before they are accepted (uvicorn's default)
LOG = logging.getLogger("charrnn.serve")


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
    ssl_certfile: str | None = None  # PEM certificate (chain); with it the server speaks HTTPS
    ssl_keyfile: str | None = None  # its private key, unless the certificate file holds it too


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    """Refuse what must not start: a non-loopback address without a key, a key no client could send,
    a certificate that does not load, a missing checkpoint."""
    if not is_loopback(options.host) and not options.api_key:
        raise ConfigError(
            f"--host {options.host} is reachable from other machines; set --api-key KEY (or CHARRNN_API_KEY) to bind it"
        )
    if options.api_key is not None:
        check_key(options.api_key)
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {options.port}")
    check_tls(options.ssl_certfile, options.ssl_keyfile)
    for path in options.checkpoints or (None,):
        resolved = resolve_checkpoint(path)
        if not resolved.is_file():
            raise ConfigError(f"-c {path}: no such checkpoint file or run directory")


def check_tls(certfile: str | None, keyfile: str | None) -> None:
    """Load the certificate and key once here, so that a bad one is one line (uvicorn would print a traceback)."""
    if keyfile and not certfile:
        raise ConfigError("--ssl-keyfile needs --ssl-certfile (the certificate the key belongs to)")
    if not certfile:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")  # never prompt: an encrypted key fails
    except (OSError, ssl.SSLError) as exc:
        given = f"--ssl-certfile {certfile}" + (f" --ssl-keyfile {keyfile}" if keyfile else "")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot use {given}: {reason}; give a PEM certificate and its unencrypted PEM private key"
        ) from None


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address `host` names (brackets around IPv6 allowed), or a ServeError.

    Bound here, before uvicorn starts, so that nothing reports the server up unless it really is.
    """
    address = host.strip("[]")
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    sockets: list[socket.socket] = []
    try:
        seen = set()
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if (family, sockaddr[0]) in seen:
                continue
            seen.add((family, sockaddr[0]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # every address on the port the first one got
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ServeError(f"cannot listen on {where}: {bind_advice(exc)}") from None
    return sockets


def bind_advice(exc: OSError) -> str:
    """Why an address could not be bound, and what to do about it."""
    if isinstance(exc, socket.gaierror):
        return f"{exc.strerror or exc}; give --host an address or name of this machine"
    if exc.errno == errno.EADDRINUSE:
        return "another program is listening there; choose another --port (0: any free port) or stop that program"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address; choose another --host (127.0.0.1, ::1 or 0.0.0.0)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); choose --port 1024 or above"
    return f"{exc.strerror or exc}; choose another --host or --port"


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
    limits = options.limits
    config = uvicorn.Config(
        app,
        host=options.host.strip("[]"),
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=BACKSTOP_S,
        lifespan="off",
        http=protocol_for(limits),
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=BACKLOG,
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
    )
    sockets = bind(options.host, options.port)
    if not is_loopback(options.host.strip("[]")) and not options.ssl_certfile:
        LOG.warning(
            "warning: %s is reachable from other machines over plain HTTP, so the API key and the text travel "
            "in clear; put TLS in front (a reverse proxy, or --ssl-certfile/--ssl-keyfile; docs/serve.md)",
            options.host,
        )
    server = Server(config)
    failed: list[CharRNNError] = []
    loaded: list[dict[str, Served]] = []

    def load() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        if not server.started:
            return
        try:
            served = load_models(options.checkpoints, options.device, options.limits, options.threads)
        except CharRNNError as exc:
            failed.append(exc)
            server.should_exit = True
            return
        loaded.append(served)
        app.state.charrnn.served = served
        address = options.host.strip("[]")
        host = f"[{address}]" if ":" in address else address
        port = bound_port(server) or options.port
        scheme = "https" if options.ssl_certfile else "http"
        on_ready(f"{scheme}://{host}:{port}", list(served))

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
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
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
