"""Loss curves drawn with characters, for terminals and log files alike (no plotting library needed).

4.17 ┤·                       training loss: dense points, joined column by column;
     │ ··                     validation: one marker per validation, not joined (a joining
2.80 ┤   ··●                  line would read as a second training curve). Colour on a
     │      ·····●·····       colour terminal and distinct markers always, so the chart
1.43 ┤                ·····●  reads the same in a log file.
     └──────────────────────
      0         600     1203  step
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

TRAIN_MARKER = "·"
VAL_MARKERS = ("●", "■", "▲", "◆", "✚", "○", "□", "△")
COLORS = ("cyan", "magenta", "yellow", "green", "blue", "red", "bright_cyan", "bright_magenta")
ASCII = {"·": ".", "●": "o", "■": "#", "▲": "^", "◆": "*", "✚": "+", "○": "O", "□": "%", "△": "A"}
BOX = {"tick": "┤", "axis": "│", "corner": "└", "rule": "─"}
BOX_ASCII = {"tick": "+", "axis": "|", "corner": "+", "rule": "-"}


@dataclass(frozen=True)
class Line:
    """One series: points, a legend label, a marker character and a colour name."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    marker: str = TRAIN_MARKER
    color: str = COLORS[0]


def loss_lines(
    runs: Sequence[tuple[str, tuple[Sequence[float], Sequence[float]], tuple[Sequence[float], Sequence[float]]]],
) -> list[Line]:
    """Lines for (name, train (xs, ys), val (xs, ys)) per run: one colour per run, train dotted, val marked."""
    lines = []
    for index, (name, train, val) in enumerate(runs):
        color = COLORS[index % len(COLORS)]
        prefix = f"{name} " if len(runs) > 1 else ""
        if train[0]:
            lines.append(Line(f"{prefix}train", tuple(train[0]), tuple(train[1]), TRAIN_MARKER, color))
        if val[0]:
            marker = VAL_MARKERS[index % len(VAL_MARKERS)]
            lines.append(Line(f"{prefix}val", tuple(val[0]), tuple(val[1]), marker, color))
    return lines


def nice(value: float, whole: bool = False) -> str:
    """Axis numbers: short, no scientific notation for the usual ranges; `whole` ones print as integers."""
    if value == 0:
        return "0"
    if whole and abs(value) < 10_000:
        return f"{value:.0f}"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def render(
    lines: Sequence[Line],
    width: int = 72,
    height: int = 12,
    x_label: str = "step",
    y_label: str = "loss, nats/char",
    ascii_only: bool = False,
) -> list[Text]:
    """The chart as lines of rich Text (styles carry the colours; `.plain` is the uncoloured chart)."""
    drawn = [line for line in lines if line.xs and len(line.xs) == len(line.ys)]
    if not drawn:
        return [Text("(no finite points to draw yet)")]
    box = BOX_ASCII if ascii_only else BOX
    xs = [x for line in drawn for x in line.xs]
    ys = [y for line in drawn for y in line.ys if math.isfinite(y)]
    if not ys:
        return [Text("(no finite points to draw yet)")]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 1, x1 + 1
    labels = [nice(y1 - (y1 - y0) * r / (height - 1)) for r in range(height)]
    label_width = max(len(label) for label in labels)
    cols = max(10, width - label_width - 4 - len(x_label))
    grid: list[list[tuple[str, str | None]]] = [[(" ", None)] * cols for _ in range(height)]

    def cell(x: float, y: float) -> tuple[int, int]:
        col = round((x - x0) / (x1 - x0) * (cols - 1))
        row = round((y1 - y) / (y1 - y0) * (height - 1))
        return col, row

    for line in drawn:
        marker = ASCII.get(line.marker, line.marker) if ascii_only else line.marker
        points = [cell(x, y) for x, y in zip(line.xs, line.ys, strict=True) if math.isfinite(y)]
        joined = marker in (TRAIN_MARKER, ASCII[TRAIN_MARKER])  # dense series; sparse ones keep bare markers
        for (c0, r0), (c1, r1) in itertools.pairwise(points if joined else []):
            for col in range(c0 + 1, c1):  # join neighbours column by column
                row = round(r0 + (r1 - r0) * (col - c0) / (c1 - c0))
                if grid[row][col][0] == " ":
                    grid[row][col] = (TRAIN_MARKER if not ascii_only else ".", line.color)
        for col, row in points:
            grid[row][col] = (marker, line.color)

    out: list[Text] = []
    label_rows = {0, (height - 1) // 2, height - 1}
    for r, row_cells in enumerate(grid):
        label = labels[r] if r in label_rows else ""
        text = Text(f"{label:>{label_width}} " + (box["tick"] if label else box["axis"]))
        used = max((c for c, (char, _) in enumerate(row_cells) if char != " "), default=-1)
        for char, color in row_cells[: used + 1]:
            text.append(char, style=color)
        out.append(text)
    out.append(Text(" " * label_width + " " + box["corner"] + box["rule"] * cols))
    whole = all(float(x).is_integer() for x in xs)
    left, mid, right = (nice(round(v), whole=True) if whole else nice(v) for v in (x0, (x0 + x1) / 2, x1))
    axis = [" "] * (cols + len(right) + 1)
    for pos, value in ((0, left), ((cols - len(mid)) // 2, mid), (cols - len(right), right)):
        axis[pos : pos + len(value)] = list(value)
    out.append(Text(" " * (label_width + 2) + "".join(axis).rstrip() + f"  {x_label}"))
    legend = Text(" " * (label_width + 2))
    for line in drawn:
        marker = ASCII.get(line.marker, line.marker) if ascii_only else line.marker
        legend.append(marker, style=line.color)
        legend.append(f" {line.label}   ")
    legend.append(f"({y_label})", style="dim")
    out.append(legend)
    return out


def encodable(stream_encoding: str | None) -> bool:
    """True when the box-drawing characters and markers survive the stream's encoding (None: a str buffer)."""
    if stream_encoding is None:
        return True
    try:
        ("".join(BOX.values()) + "".join(VAL_MARKERS) + TRAIN_MARKER).encode(stream_encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
