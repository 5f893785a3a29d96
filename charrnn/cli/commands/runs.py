"""`charrnn runs`, `charrnn plot` and `charrnn corpus`: the runs on disk, their curves, the default corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.choices import Axis, RunOrder
from charrnn.cli.common import err, examples, guarded, stdout_console
from charrnn.store.runs import DEFAULT_ROOT

PLOT_EPILOG = examples(
    "charrnn plot                                    # newest run, in the terminal",
    "charrnn plot checkpoints/* -o curves.png        # every run on one chart (pip install 'charrnn[plot]')",
    "charrnn plot checkpoints/a checkpoints/b --x time",
)
RUNS_EPILOG = examples(
    "charrnn runs                                    # runs under ./checkpoints, newest first",
    "charrnn runs experiments/ --sort bpc            # best validation bits/char first",
)


def plot(
    runs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Run directories (or checkpoints in them) to draw together. [default: newest run]"),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="Write an image (.png, .svg, .pdf; needs matplotlib) instead of drawing in the terminal.",
        ),
    ] = None,
    x: Annotated[Axis, typer.Option("--x", help="Horizontal axis (time in seconds).")] = Axis.STEP,
    height: Annotated[int, typer.Option(min=5, max=60, help="Terminal chart height in lines.")] = 14,
) -> None:
    """Draw the training and validation loss curves of one or several runs on one chart."""
    with guarded():
        from charrnn.cli.curve import encodable
        from charrnn.cli.plot import terminal_chart, write_image
        from charrnn.files import display_path
        from charrnn.store.metrics import read_run
        from charrnn.store.runs import newest_run

        targets = runs or [str(newest_run(DEFAULT_ROOT))]
        logs = [read_run(target) for target in targets]
        if output is not None:
            err(f"charrnn: wrote {display_path(write_image(logs, output, x.value))}")
            return
        console = stdout_console()
        width = min(console.width, 120) if console.is_terminal else 100
        ascii_only = not encodable(getattr(sys.stdout, "encoding", None))
        for line in terminal_chart(logs, x.value, width=width, height=height, ascii_only=ascii_only):
            console.print(line)


def runs(
    directory: Annotated[
        Path, typer.Argument(help="Where to look for run directories (searched recursively).")
    ] = DEFAULT_ROOT,
    sort: Annotated[RunOrder, typer.Option(help="date: newest first; bpc: best first.")] = RunOrder.DATE,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array instead of a table.")] = False,
) -> None:
    """List the runs under DIRECTORY: corpus, model size, steps, best validation bits/char, date."""
    with guarded():
        from charrnn.cli.runs_table import format_table, run_row, sort_rows
        from charrnn.store.metrics import find_runs

        rows = sort_rows([run_row(run, directory) for run in find_runs(directory)], sort.value)
        if as_json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        if not rows:
            err(f"charrnn: no runs under {directory}/; train one with `charrnn train FILE`")
            return
        console = stdout_console()
        table = format_table(rows)
        console.print(table[0], style="bold")
        for line in table[1:]:
            console.print(line)


def corpus(
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the corpus here instead of the cache.")
    ] = None,
) -> None:
    """Build the default corpus (this Python's standard library source) and print its path."""
    with guarded():
        from charrnn.data.default_corpus import build_default_corpus

        path = build_default_corpus(output)
        err(f"charrnn: default corpus: {path.stat().st_size:,} bytes")
        print(path)
