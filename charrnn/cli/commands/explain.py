"""`charrnn explain`: how surprised the model is by each character of a text, and what it expected."""

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
    err,
    examples,
    guarded,
)
from charrnn.cli.output import stream_to_stdout
from charrnn.insight.options import Unknown
from charrnn.shared_options import DEFAULT_DEVICE, Work

if TYPE_CHECKING:
    from charrnn.insight.explain import Explained
    from charrnn.insight.source import Scored

EPILOG = examples(
    "charrnn explain 'To be, or not to be' -c checkpoints/shakespeare",
    "charrnn explain speech.txt --html speech.html     # hover a character: bits and the top-5 guesses",
    "charrnn explain - --json < speech.txt | jq .summary",
    "charrnn explain --text 'and/or notes.txt'         # text that looks like a file name",
)


def explain(
    text: TextArgument = None,
    literal: LiteralOption = None,
    checkpoint: CheckpointOption = None,
    html: Annotated[
        Optional[Path], typer.Option("--html", help="Also write one self-contained HTML page here.")
    ] = None,
    as_json: JsonOption = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Guesses kept per character.")] = 5,
    unknown: Annotated[
        Unknown, typer.Option(help="Characters the model does not know: error, or skip them and score the rest.")
    ] = Unknown.ERROR,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
) -> None:
    """Score each character of a text: bits of surprise, the model's top guesses, the worst spans."""
    with guarded():
        from charrnn.insight.explain import Explained
        from charrnn.insight.page import build_page
        from charrnn.insight.palette import terminal_depth
        from charrnn.insight.source import encode_text, read_source
        from charrnn.insight.surprisal import score
        from charrnn.insight.terminal import render_bits
        from charrnn.insight.threads import choose_threads
        from charrnn.store.opening import open_model

        source = read_source(text, literal)
        opened = open_model(checkpoint, device)
        scored = encode_text(source.text, opened.vocab, unknown)
        warn_skipped(scored)
        choose_threads(opened.model.config, opened.device)
        result = Explained(scored.text, score(opened.model, scored.ids, opened.device, top_k), opened.vocab)
        if html is not None:
            write_page(html, build_page(result.page(f"charrnn explain: {source.name}")))
        if as_json:
            stream_to_stdout([json.dumps(result.to_json(), ensure_ascii=False) + "\n"])
            return
        lines = [result.summary_line()]
        for span in result.worst():
            snippet = scored.text[span.start : span.end]
            lines.append(f"  worst {span.start}-{span.end}: {span.mean_bits:.2f} bits/char  {snippet!r}")
        body = (
            "" if html is not None else render_bits(scored.text, list(bits_or_none(result)), terminal_depth(sys.stdout))
        )
        stream_to_stdout([body, "\n".join(lines) + "\n"])


def bits_or_none(result: Explained) -> list[float | None]:
    return [None if j == 0 else float(b) for j, b in enumerate(result.char_bits())]


def warn_skipped(scored: Scored) -> None:
    if scored.dropped:
        chars = "".join(scored.skipped)
        err(f"charrnn: warning: skipped {scored.dropped} character(s) not in the vocabulary: {chars!r}")


def write_page(path: Path, page: str) -> None:
    """Write a page by the rule every output follows (files.write_output), and say where."""
    from charrnn.files import display_path, write_output

    write_output(path, page.encode("utf-8"), "page")
    err(f"charrnn: wrote {display_path(path)}")
