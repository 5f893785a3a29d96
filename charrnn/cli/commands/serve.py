"""`charrnn serve`: an OpenAI-compatible HTTP API (and a playground page) over one or more checkpoints."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from charrnn.cli.common import DeviceOption, checkpoint_option, err, examples, guarded, threads_option
from charrnn.errors import CharRNNError
from charrnn.serve.limits import Limits
from charrnn.shared_options import DEFAULT_DEVICE, Work

LIMITS, CONNECTIONS, ADVANCED = "Limits", "Connections", "Advanced"
MISSING = "charrnn serve needs FastAPI and uvicorn: pip install 'charrnn[serve]'"

EPILOG = examples(
    "charrnn serve                                   # newest run, http://127.0.0.1:8000",
    "charrnn serve -c checkpoints/poems -c checkpoints/code --port 8080",
    "CHARRNN_API_KEY=secret charrnn serve --host 0.0.0.0 --ssl-certfile cert.pem --ssl-keyfile key.pem",
    'curl -s localhost:8000/v1/completions -d \'{"model": "poems", "prompt": "The sea", "max_tokens": 80}\'',
)


def serve(
    checkpoint: Annotated[Optional[list[str]], checkpoint_option(repeatable=True)] = None,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="CHARRNN_API_KEY", help="Require `Authorization: Bearer KEY` on every route but /health."),
    ] = None,
    cors: Annotated[
        Optional[list[str]], typer.Option(help="Allow browser calls from ORIGIN (repeatable). [default: none]")
    ] = None,
    max_streams: Annotated[
        int, typer.Option(min=1, help="Streams generated together; more wait in the queue.", rich_help_panel=LIMITS)
    ] = Limits.max_streams,
    max_queue: Annotated[
        int, typer.Option(min=0, help="Streams that may wait for a place; more get 429.", rich_help_panel=LIMITS)
    ] = Limits.max_queue,
    queue_timeout: Annotated[
        float, typer.Option(min=0.0, help="Seconds a request may wait for a place before 429.", rich_help_panel=LIMITS)
    ] = Limits.queue_timeout_s,
    request_timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds a request may generate before it is ended.", rich_help_panel=LIMITS),
    ] = Limits.request_timeout_s,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Largest max_tokens (characters) a request may ask for.", rich_help_panel=LIMITS)
    ] = Limits.max_tokens,
    max_prompt: Annotated[
        int, typer.Option(min=1, help="Characters per prompt (413 beyond).", rich_help_panel=LIMITS)
    ] = Limits.max_prompt_chars,
    max_body: Annotated[
        int, typer.Option(min=1, help="Bytes per request body (413 beyond).", rich_help_panel=LIMITS)
    ] = Limits.max_body_bytes,
    max_n: Annotated[int, typer.Option(min=1, help="Choices per prompt (n).", rich_help_panel=LIMITS)] = Limits.max_n,
    max_unsent: Annotated[
        int,
        typer.Option(
            min=1,
            help="Characters a request may have waiting for its client to read; beyond, it is ended.",
            rich_help_panel=LIMITS,
        ),
    ] = Limits.max_unsent,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Open connections; one more gets 503.", rich_help_panel=CONNECTIONS)
    ] = Limits.max_connections,
    header_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds a request's line and headers may take to arrive (then 408).",
            rich_help_panel=CONNECTIONS,
        ),
    ] = Limits.header_timeout_s,
    body_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds a request's body may take after its headers (then 408).",
            rich_help_panel=CONNECTIONS,
        ),
    ] = Limits.body_timeout_s,
    send_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Seconds a client may read nothing while output waits (then disconnected).",
            rich_help_panel=CONNECTIONS,
        ),
    ] = Limits.send_timeout_s,
    ssl_certfile: Annotated[
        Optional[str],
        typer.Option(help="PEM certificate: serve HTTPS (see docs/serve.md).", rich_help_panel=CONNECTIONS),
    ] = None,
    ssl_keyfile: Annotated[
        Optional[str], typer.Option(help="PEM private key of --ssl-certfile.", rich_help_panel=CONNECTIONS)
    ] = None,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
    threads: Annotated[Optional[int], threads_option("1, for the batched step", ADVANCED)] = None,
) -> None:
    """Serve models over HTTP: OpenAI's /v1/completions and /v1/chat/completions (streaming too), /v1/models,
    /health, a playground at /.

    Stops on SIGTERM or Ctrl-C (exit 0) after open streams finish or are cancelled.
    """
    with guarded():
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise CharRNNError(MISSING) from None
        from charrnn.serve.server import ServeOptions
        from charrnn.serve.server import serve as run_server

        limits = Limits(
            max_body_bytes=max_body,
            max_prompt_chars=max_prompt,
            max_tokens=max_tokens,
            default_max_tokens=min(Limits.default_max_tokens, max_tokens),
            max_n=max_n,
            max_streams=max_streams,
            max_queue=max_queue,
            queue_timeout_s=queue_timeout,
            request_timeout_s=request_timeout,
            max_unsent=max_unsent,
            max_connections=max_connections,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            send_timeout_s=send_timeout,
        )
        options = ServeOptions(
            checkpoints=tuple(checkpoint or ()),
            host=host,
            port=port,
            api_key=api_key or None,
            cors=tuple(cors or ()),
            device=device,
            threads=threads or 1,
            limits=limits,
            ssl_certfile=ssl_certfile or None,
            ssl_keyfile=ssl_keyfile or None,
        )
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("charrnn serve: %(message)s"))
        log = logging.getLogger("charrnn.serve")
        log.addHandler(handler)
        log.setLevel(logging.INFO)  # ordinary events (a client left, a slow client cut off) are one line each
        log.propagate = False

        def ready(url: str, models: list[str]) -> None:
            err(f"charrnn serve: {url}  models: {', '.join(models)}  (playground {url}/, API {url}/v1)")

        run_server(options, ready)
        err("charrnn serve: stopped")
