"""The `charrnn` command: the Typer app, its commands (cli.commands) and the console entry point.

Each command parses its flags, calls one library function and prints; `cli.common.guarded` maps
domain errors to exit codes. Heavy imports (torch) happen inside the commands so that
`charrnn --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from charrnn.cli.commands import evaluate, explain, export, inspect, memory, neurons, runs, sample, serve, train
from charrnn.cli.common import EXIT_INTERRUPTED, EXIT_OK, err, output_failure, reader_gone
from charrnn.version import __version__

app = typer.Typer(
    name="charrnn",
    help="Train character-level language models on your own text and generate from them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples:\n"
    "  charrnn train poems.txt --time 10m      # train; checkpoints go to checkpoints/poems\n"
    "  charrnn sample --temp 0.8 --length 500  # generate from the newest run\n"
    "  charrnn runs                            # which run was best\n"
    "  charrnn plot checkpoints/*              # compare loss curves\n\n"
    "Shell completion: charrnn --install-completion (bash, zsh, fish, PowerShell); restart the shell.",
)


def version_callback(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train character-level language models on your own text and generate from them.

    Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 bad input data or checkpoint, 130 interrupted, 143 terminated.
    """


app.command(epilog=train.EPILOG)(train.train)
app.command(epilog=sample.SAMPLE_EPILOG)(sample.sample)
app.command(epilog=sample.REPL_EPILOG)(sample.repl)
app.command(name="eval", epilog=evaluate.EPILOG)(evaluate.evaluate)
app.command(epilog=inspect.INFO_EPILOG)(inspect.info)
app.command(epilog=runs.PLOT_EPILOG)(runs.plot)
app.command(epilog=runs.RUNS_EPILOG)(runs.runs)
app.command(epilog=inspect.VERIFY_EPILOG)(inspect.verify)
app.command()(runs.corpus)
app.command(epilog=serve.EPILOG)(serve.serve)
app.command(epilog=explain.EPILOG)(explain.explain)
app.command(epilog=neurons.EPILOG)(neurons.neurons)
app.command(epilog=memory.EPILOG)(memory.memory)
app.command(epilog=export.EPILOG)(export.export)


def main() -> None:
    """Console entry point: usage errors as one line (exit 2), everything else through `guarded`."""
    from rich.console import Console

    from charrnn.cli.helpfmt import polish

    Console.on_broken_pipe = reader_gone  # type: ignore[method-assign,assignment]  # help screens, tables
    command = typer.main.get_command(app)
    polish(command)
    try:
        code = command(standalone_mode=False)
        sys.stdout.flush()  # here, so that a failed write is reported, not lost at exit
    except OSError as exc:  # stdout or stderr gone or full; library I/O errors arrive as domain errors
        sys.exit(output_failure(exc))
    except typer.Abort:
        err("charrnn: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # Typer's usage errors (bad flag, bad value) carry `format_message` and `exit_code`.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message()
        if message:  # empty when the help text was already shown (no arguments given)
            err(f"charrnn: error: {message}{hint}")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
