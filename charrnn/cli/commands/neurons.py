"""`charrnn neurons`: which units track what (quotes, brackets, line position, ...), and a unit drawn over the text."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from charrnn.cli.common import (
    CheckpointOption,
    DeviceOption,
    JsonOption,
    LiteralOption,
    TextArgument,
    examples,
    guarded,
    threads_option,
)
from charrnn.cli.output import stream_to_stdout
from charrnn.insight.options import Unknown
from charrnn.shared_options import DEFAULT_DEVICE, Work

if TYPE_CHECKING:
    import numpy as np

    from charrnn.insight.finder import Found
    from charrnn.insight.units import UnitRef
    from charrnn.store.opening import OpenModel

EPILOG = examples(
    "charrnn neurons code.py -c checkpoints/code                 # the units that track quotes, brackets, ...",
    "charrnn neurons code.py --unit 1:c:37                       # draw one unit over the text",
    "charrnn neurons play.txt --feature name='[A-Z]{3,}' --html units.html",
    "charrnn neurons --text 'x = a/b  # half'                    # text with a slash: --text",
)


def neurons(
    text: TextArgument = None,
    literal: LiteralOption = None,
    checkpoint: CheckpointOption = None,
    unit: Annotated[
        Optional[list[str]],
        typer.Option("--unit", help="Draw this unit: LAYER:INDEX (h) or LAYER:c:INDEX (LSTM cell), 0-based."),
    ] = None,
    feature: Annotated[
        Optional[list[str]], typer.Option("--feature", help="A feature of your own: NAME=REGEX (matches are 1).")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=50, help="Units listed per feature.")] = 3,
    html: Annotated[
        Optional[Path], typer.Option("--html", help="Write a page that colours the text by any unit.")
    ] = None,
    as_json: JsonOption = False,
    unknown: Annotated[Unknown, typer.Option(help="Unknown characters: error, or skip them.")] = Unknown.ERROR,
    threads: Annotated[Optional[int], threads_option("1 for small models")] = None,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
) -> None:
    """Find the units that track features of the text (correlation over every character), or draw one."""
    with guarded():
        from charrnn.cli.commands.explain import warn_skipped, write_page
        from charrnn.insight.features import parse_feature
        from charrnn.insight.finder import display_values, find_units
        from charrnn.insight.palette import terminal_depth
        from charrnn.insight.source import encode_text, read_source
        from charrnn.insight.terminal import render_unit
        from charrnn.insight.threads import choose_threads
        from charrnn.insight.units import parse_unit
        from charrnn.store.opening import open_model

        extra = tuple(parse_feature(spec) for spec in feature or ())
        source = read_source(text, literal)
        opened = open_model(checkpoint, device)
        units = tuple(dict.fromkeys(parse_unit(spec, opened.model.config) for spec in unit or ()))
        scored = encode_text(source.text, opened.vocab, unknown)
        warn_skipped(scored)
        choose_threads(opened.model.config, opened.device, threads)
        found = find_units(opened.model, scored.ids, scored.text, opened.device, extra, units, top)
        if html is not None:
            title = f"charrnn neurons: {source.name}"
            write_page(html, build(found, opened, scored.ids, title, units))
        if as_json:
            stream_to_stdout([json.dumps(found.to_json()) + "\n"])
            return
        depth = terminal_depth(sys.stdout)
        drawn = [
            render_unit(scored.text, display_values(u, found.report.traces[u]).tolist(), depth, u.name) for u in units
        ]
        stream_to_stdout(["\n".join(drawn), *table(found)])


def build(found: Found, opened: OpenModel, ids: np.ndarray, title: str, units: tuple[UnitRef, ...]) -> str:
    """The page: a second pass over its characters records the units shown."""
    from charrnn.insight.finder import unit_page
    from charrnn.insight.page import build_page

    return build_page(unit_page(opened.model, ids, found, opened.device, title, opened.vocab, units))


def table(found: Found) -> list[str]:
    """Per feature the best units; then the most selective units overall."""
    report = found.report
    config_line = f"{report.chars:,} characters, {len(report.units):,} units (every layer's h, and c for an LSTM)\n"
    lines = [
        "\n" if report.traces else "",
        config_line,
        "\nfeature         best units (Pearson r over every character)\n",
    ]
    for name, scores in found.per_feature().items():
        cells = "   ".join(f"{s.unit.name:>8} {s.r:+.2f}" for s in scores)
        lines.append(f"{name:<15} {cells}\n")
    absent = [name for name in report.features if name not in found.present]
    if absent:
        lines.append(f"{'(not in text)':<15} {', '.join(absent)}\n")
    lines.append("\nmost selective units (strongest |r| with any feature)\n")
    for s in report.selective(10):
        lines.append(f"  {s.unit.name:>8}  {s.feature:<15} {s.r:+.2f}\n")
    return lines
