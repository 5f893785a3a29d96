"""`charrnn explain`: how surprised the model is by each character of a text, and what it expected."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from charrnn.cli.common import CheckpointOption, DeviceOption, JsonOption, err, examples, guarded
from charrnn.cli.output import stream_to_stdout
from charrnn.insight.options import Unknown

if TYPE_CHECKING:
    from charrnn.insight.explain import Explained
    from charrnn.insight.source import Scored

EPILOG = examples(
    "charrnn explain 'To be, or not to be' -c checkpoints/shakespeare",
    "charrnn explain speech.txt --html speech.html     # hover a character: bits and the top-5 guesses",
    "charrnn explain - --json < speech.txt | jq .summary",
)


def explain(
    text: Annotated[str, typer.Argument(help="The text itself, a UTF-8 file, or - for stdin.")],
    checkpoint: CheckpointOption = None,
    html: Annotated[
        Optional[Path], typer.Option("--html", help="Also write one self-contained HTML page here.")
    ] = None,
    as_json: JsonOption = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Guesses kept per character.")] = 5,
    unknown: Annotated[
        Unknown, typer.Option(help="Characters the model does not know: error, or skip them and score the rest.")
    ] = Unknown.ERROR,
    device: DeviceOption = "cpu",
) -> None:
    """Score each character of a text: bits of surprise, the model's top guesses, the worst spans."""
    with guarded():
        from charrnn.insight.explain import Explained
        from charrnn.insight.page import build_page
        from charrnn.insight.palette import terminal_depth
        from charrnn.insight.source import encode_text, read_text
        from charrnn.insight.surprisal import score
        from charrnn.insight.terminal import render_bits
        from charrnn.insight.threads import choose_threads
        from charrnn.store.opening import open_model

        raw = read_text(text)
        opened = open_model(checkpoint, device)
        scored = encode_text(raw, opened.vocab, unknown)
        warn_skipped(scored)
        choose_threads(opened.model.config, opened.device)
        result = Explained(scored.text, score(opened.model, scored.ids, opened.device, top_k), opened.vocab)
        if html is not None:
            write_page(html, build_page(result.page(f"charrnn explain: {describe(text)}")))
            err(f"charrnn: wrote {html}")
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


def describe(text: str) -> str:
    """A short title for the page: the file name, stdin, or the start of the text."""
    if text == "-":
        return "stdin"
    if len(text) < 256 and Path(text).is_file():
        return Path(text).name
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def write_page(path: Path, page: str) -> None:
    from charrnn.errors import InputError
    from charrnn.files import atomic_write

    try:
        atomic_write(path, page.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot write the page ({exc.strerror or exc})") from None
