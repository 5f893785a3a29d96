"""`charrnn memory`: how far back the model looks (context curve, gradient through time, gates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    CheckpointOption,
    DeviceOption,
    JsonOption,
    LiteralOption,
    TextArgument,
    err,
    examples,
    guarded,
    threads_option,
)
from charrnn.cli.output import stream_to_stdout
from charrnn.insight.options import Unknown
from charrnn.shared_options import DEFAULT_DEVICE, Work

EPILOG = examples(
    "charrnn memory held_out.txt -c checkpoints/poems            # would a longer --seq-len help?",
    "charrnn memory held_out.txt --json | jq .context.context_for_90pct_gain",
    "charrnn memory held_out.txt -o memory.png                   # the curves as a plot (needs matplotlib)",
)


def memory(
    text: TextArgument = None,
    literal: LiteralOption = None,
    checkpoint: CheckpointOption = None,
    as_json: JsonOption = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the curves as a PNG.")] = None,
    positions: Annotated[int, typer.Option(min=1, max=4096, help="Positions sampled for the context curve.")] = 128,
    span: Annotated[int, typer.Option(min=1, max=4096, help="Steps back for the gradient curve.")] = 256,
    unknown: Annotated[Unknown, typer.Option(help="Unknown characters: error, or skip them.")] = Unknown.ERROR,
    threads: Annotated[Optional[int], threads_option("1 for small models")] = None,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
) -> None:
    """Bits/char with only the last k characters, the gradient k steps back, and gate saturation."""
    with guarded():
        from charrnn.cli.commands.explain import warn_skipped
        from charrnn.files import display_path
        from charrnn.insight.memory import memory_report
        from charrnn.insight.memory_view import memory_json, memory_lines, memory_png
        from charrnn.insight.source import encode_text, read_source
        from charrnn.insight.threads import choose_threads
        from charrnn.store.opening import open_model

        source = read_source(text, literal)
        opened = open_model(checkpoint, device)
        scored = encode_text(source.text, opened.vocab, unknown, minimum=16)
        warn_skipped(scored)
        choose_threads(opened.model.config, opened.device, threads)
        report = memory_report(opened.model, scored.ids, opened.device, positions, span)
        if output is not None:
            memory_png(
                report,
                output,
                f"{opened.model.config.cell.upper()} {opened.model.config.num_layers}x"
                f"{opened.model.config.hidden_size}",
            )
            err(f"charrnn: wrote {display_path(output)}")
        if as_json:
            stream_to_stdout([json.dumps(memory_json(report)) + "\n"])
        else:
            stream_to_stdout(memory_lines(report))
