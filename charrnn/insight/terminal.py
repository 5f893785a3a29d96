"""Text with a colour behind each character, for a terminal; or, without colour, each line of text
with a line of marks under it (digits for bits, +/- for a unit), which reads in a pipe or a log."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from charrnn.insight.palette import BITS_MAX, RESET, Depth, background, bits_colour, unit_colour

RGB = tuple[int, int, int]


def shown(ch: str) -> str:
    """One printable cell for a character (newline, tab and other controls made visible)."""
    if ch == "\n":
        return "↵"
    if ch == "\t":
        return "→"
    return "·" if not ch.isprintable() else ch


def coloured(text: str, colours: Sequence[RGB | None], depth: Depth) -> str:
    """Each character on its colour (None: no colour); a newline is drawn as ↵ and then kept."""
    out: list[str] = []
    for ch, rgb in zip(text, colours, strict=True):
        cell = shown(ch)
        out.append(cell if rgb is None else background(rgb, depth) + cell + RESET)
        if ch == "\n":
            out.append("\n")
    return "".join(out)


def marked(text: str, marks: Sequence[str]) -> str:
    """Plain form: each line of the text, then a line with one mark under each character."""
    out: list[str] = []
    line: list[str] = []
    row: list[str] = []
    for ch, mark in zip(text, marks, strict=True):
        line.append(shown(ch) if ch != "\n" else "↵")
        row.append(mark)
        if ch == "\n":
            out.append("".join(line) + "\n" + "".join(row).rstrip() + "\n")
            line, row = [], []
    if line:
        out.append("".join(line) + "\n" + "".join(row).rstrip() + "\n")
    return "".join(out)


def bits_mark(bits: float | None) -> str:
    return " " if bits is None else str(min(9, int(bits + 0.5)))


def unit_mark(value: float) -> str:
    return "+" if value > 0.5 else "-" if value < -0.5 else "."


def legend_bar(depth: Depth, colour: Callable[[float], RGB], lo: float, hi: float, labels: str) -> str:
    steps = 24
    cells = "".join(background(colour(lo + (hi - lo) * i / (steps - 1)), depth) + " " for i in range(steps))
    return f"{cells}{RESET}  {labels}\n"


def render_bits(text: str, bits: Sequence[float | None], depth: Depth) -> str:
    """`bits[j]` is character j's surprise (None for the first, which nothing predicts)."""
    if depth is Depth.NONE:
        legend = "under each character: its surprise in bits, rounded (9: 9 or more; blank: not scored)\n"
        return marked(text, [bits_mark(b) for b in bits]) + "\n" + legend
    colours = [None if b is None else bits_colour(b) for b in bits]
    legend = legend_bar(depth, bits_colour, 0.0, BITS_MAX, f"0 .. {BITS_MAX:g}+ bits of surprise")
    return coloured(text, colours, depth) + "\n\n" + legend


def render_unit(text: str, values: Sequence[float], depth: Depth, name: str) -> str:
    """One unit Karpathy-style: each character's background from the unit's value after reading it."""
    if depth is Depth.NONE:
        legend = f"unit {name}: under each character + above 0.5, - below -0.5, . between\n"
        return marked(text, [unit_mark(v) for v in values]) + "\n" + legend
    body = coloured(text, [unit_colour(v) for v in values], depth)
    return body + "\n\n" + legend_bar(depth, unit_colour, -1.0, 1.0, f"unit {name}: -1 blue .. 0 white .. +1 red")
