"""What every command shares: one-line errors and exit codes, stderr messages, option declarations.

Domain errors (charrnn.errors) become one line on stderr and their documented exit code here, at
the edge; library code never prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer

from charrnn.errors import CharRNNError
from charrnn.shared_options import (
    CHECKPOINT_METAVAR,
    DEVICE_HELP,
    DEVICE_METAVAR,
    MAX_THREADS,
    checkpoint_help,
    threads_help,
)

# The codes the CLI itself returns; 2 (usage) comes from Typer and 3 (bad input) from InputError.
EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 130

# Options several commands take, declared once. --device, --threads and -c take their help, bounds
# and the device rule from shared_options (training.options reads the same). Typer takes a default
# only from the parameter, so a command writes `device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY]`
# (Work.THROUGHPUT for train and eval) and `threads: Annotated[Optional[int], threads_option("what
# it does without the flag")] = None`.


def markup_safe(text: str) -> str:
    """Help text as Rich markup: `[default: ...]` shown, not taken for a style tag."""
    return text.replace("[", "\\[")


def device_option(panel: str | None = None) -> Any:
    """--device: one help text stating the rule for every command; the default is the parameter's."""
    return typer.Option(
        "--device", help=markup_safe(DEVICE_HELP), metavar=DEVICE_METAVAR, show_default=False, rich_help_panel=panel
    )


def threads_option(default: str, panel: str | None = None) -> Any:
    """--threads: one help text and range; `default` says in words what the command does without it."""
    return typer.Option(
        "--threads",
        min=1,
        max=MAX_THREADS,
        help=markup_safe(threads_help(default)),
        show_default=False,
        rich_help_panel=panel,
    )


def checkpoint_option(repeatable: bool = False) -> Any:
    """-c/--checkpoint: a checkpoint, a run directory or nothing (the newest run); several where repeatable."""
    return typer.Option(
        "--checkpoint",
        "-c",
        help=markup_safe(checkpoint_help(repeatable)),
        metavar=CHECKPOINT_METAVAR,
        show_default=False,
    )


CheckpointOption = Annotated[Optional[str], checkpoint_option()]
DeviceOption = Annotated[str, device_option()]
TempOption = Annotated[
    float,
    typer.Option("--temp", "--temperature", "-t", min=0.0, help="Temperature; 0 picks the likeliest character."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
# explain, neurons and memory: the text to look at (insight.source.read_source decides what an argument is).
TextArgument = Annotated[
    Optional[str],
    typer.Argument(
        help="A UTF-8 file, - for stdin, or the text itself (an argument with a slash or a file extension "
        "must name a file: use --text for such text).",
        metavar="TEXT",
        show_default=False,
    ),
]
LiteralOption = Annotated[
    Optional[str], typer.Option("--text", help="The text itself, never read as a file name.", show_default=False)
]


def examples(*lines: str) -> str:
    """A help epilog: one example command per line (square brackets escaped for Rich markup)."""
    return "Examples:\n" + "\n".join("  " + line.replace("[", "\\[") for line in lines)


def err(message: str) -> None:
    """One line on stderr (if stderr itself cannot be written, there is nowhere left to say it)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        silence(sys.stderr)


def silence(stream: Any) -> None:
    """Point a standard stream's descriptor at /dev/null, so that Python's flush at exit cannot
    fail again on it (which would print "Exception ignored ..." and change the exit code)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real descriptor (tests capture into memory)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def output_failure(exc: OSError) -> int:
    """An I/O error that reached the edge: the reader went away (quiet, 0) or a write failed (one line, 1)."""
    if isinstance(exc, BrokenPipeError):
        silence(sys.stdout)
        return EXIT_OK
    if exc.filename is None:  # a standard stream: stdout full or gone bad
        silence(sys.stdout)
        err(f"charrnn: error: cannot write the output ({exc.strerror or exc})")
    else:
        err(f"charrnn: error: {exc.filename}: {exc.strerror or exc}")
    return EXIT_FAILURE


def main_rank() -> bool:
    """False in the processes torchrun starts besides rank 0: they train but stay silent."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def guarded() -> Iterator[None]:
    """Turn domain errors into one line and the documented exit code; Ctrl-C into 130."""
    try:
        yield
    except BrokenPipeError:  # before Click, which turns EPIPE into exit 1
        reader_gone()
    except CharRNNError as exc:
        if main_rank():  # every rank meets the same bad input; one line says it
            err(f"charrnn: error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if main_rank():
            err("charrnn: interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        err("charrnn: error: out of memory; use a smaller --batch-size, --hidden or corpus")
        raise typer.Exit(EXIT_FAILURE) from None
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch's CUDA one, named without importing torch here
            raise
        err("charrnn: error: the GPU ran out of memory; use a smaller --batch-size or --hidden, or --device cpu")
        raise typer.Exit(EXIT_FAILURE) from None


def stdout_console() -> Any:
    """A Rich console on stdout: colour on a terminal (unless NO_COLOR), plain text in a pipe."""
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False, soft_wrap=True)


def reader_gone(*_: Any) -> None:
    """`| head` closed the pipe: stop quietly with 0 (Rich and Click would exit 1)."""
    silence(sys.stdout)
    raise typer.Exit(EXIT_OK)
