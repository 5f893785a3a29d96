"""What every command shares: one-line errors and exit codes, stderr messages, option aliases.

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

# The codes the CLI itself returns; 2 (usage) comes from Typer and 3 (bad input) from InputError.
EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 130

# Options several commands take, declared once.
CheckpointOption = Annotated[
    Optional[str],
    typer.Option("--checkpoint", "-c", help="Checkpoint file or run directory. [default: newest run's best]"),
]
TempOption = Annotated[
    float,
    typer.Option("--temp", "--temperature", "-t", min=0.0, help="Temperature; 0 picks the likeliest character."),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def examples(*lines: str) -> str:
    """A help epilog: one example command per line (square brackets escaped for Rich markup)."""
    return "Examples:\n" + "\n".join("  " + line.replace("[", "\\[") for line in lines)


def err(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)


def main_rank() -> bool:
    """False in the processes torchrun starts besides rank 0: they train but stay silent."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def guarded() -> Iterator[None]:
    """Turn domain errors into one line and the documented exit code; Ctrl-C into 130."""
    try:
        yield
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


def stdout_console() -> Any:
    """A Rich console on stdout: colour on a terminal (unless NO_COLOR), plain text in a pipe."""
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False, soft_wrap=True)
