"""`charrnn serve`: an OpenAI-compatible HTTP API (and a playground page) over one or more checkpoints."""

from __future__ import annotations

import inspect
import logging
from typing import Annotated, Any, Optional

import typer

from charrnn.cli.common import DeviceOption, checkpoint_option, err, examples, guarded, threads_option
from charrnn.errors import CharRNNError
from charrnn.serve.limits import CONNECTIONS, LimitFlag, Limits, flag, flag_fields
from charrnn.shared_options import DEFAULT_DEVICE, Work

ADVANCED = "Advanced"
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
    ssl_certfile: Annotated[
        Optional[str],
        typer.Option(help="PEM certificate: serve HTTPS (see docs/serve.md).", rich_help_panel=CONNECTIONS),
    ] = None,
    ssl_keyfile: Annotated[
        Optional[str], typer.Option(help="PEM private key of --ssl-certfile.", rich_help_panel=CONNECTIONS)
    ] = None,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
    threads: Annotated[Optional[int], threads_option("1, for the batched step", ADVANCED)] = None,
    **limit_flags: Any,
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

        chosen = {name: limit_flags[parameter_name(name)] for name in flag_fields()}
        limits = Limits(**chosen, default_max_tokens=min(Limits.default_max_tokens, chosen["max_tokens"]))
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


def parameter_name(field_name: str) -> str:
    """The keyword a limit's flag arrives as: max_prompt_chars -> max_prompt (flag --max-prompt)."""
    return flag(field_name).replace("-", "_")


def limit_parameter(name: str, spec: LimitFlag) -> inspect.Parameter:
    """One limit's flag, from its declaration in charrnn.serve.limits."""
    default = getattr(Limits, name)
    bound: Any = type(default)(spec.minimum)
    option = typer.Option("--" + flag(name), min=bound, help=spec.help, rich_help_panel=spec.panel)
    return inspect.Parameter(parameter_name(name), inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[type(default), option])  # fmt: skip


def serve_parameters() -> list[inspect.Parameter]:
    own = inspect.signature(serve, eval_str=True).parameters.values()  # eval_str: Typer reads real types
    fixed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return fixed + [limit_parameter(name, spec) for name, spec in flag_fields().items()]


serve.__signature__ = inspect.Signature(serve_parameters())  # type: ignore[attr-defined]
