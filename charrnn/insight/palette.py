"""Colour scales (surprise: pale green -> yellow -> red; a unit: blue -1 .. white 0 .. red +1) and
what the terminal can show (truecolour, 256, 16 colours, or none)."""

from __future__ import annotations

import os
from enum import Enum
from itertools import pairwise
from typing import TextIO

RGB = tuple[int, int, int]

# Surprise stops, in bits: sure (pale green) ... lost (deep red).
BITS_STOPS: list[tuple[float, RGB]] = [
    (0.0, (230, 245, 230)),
    (2.0, (250, 240, 150)),
    (4.0, (250, 170, 90)),
    (6.0, (235, 90, 70)),
    (8.0, (170, 20, 40)),
]
BITS_MAX = BITS_STOPS[-1][0]
BLUE, WHITE, RED = (40, 90, 220), (250, 250, 250), (220, 40, 40)

# The 16 standard background colours (SGR 40-47, 100-107), as xterm draws them.
ANSI16: list[tuple[int, RGB]] = [
    (40, (0, 0, 0)), (41, (205, 0, 0)), (42, (0, 205, 0)), (43, (205, 205, 0)),
    (44, (0, 0, 238)), (45, (205, 0, 205)), (46, (0, 205, 205)), (47, (229, 229, 229)),
    (100, (127, 127, 127)), (101, (255, 0, 0)), (102, (0, 255, 0)), (103, (255, 255, 0)),
    (104, (92, 92, 255)), (105, (255, 0, 255)), (106, (0, 255, 255)), (107, (255, 255, 255)),
]  # fmt: skip


class Depth(str, Enum):
    """How many colours the output can show."""

    NONE = "none"
    C16 = "16"
    C256 = "256"
    TRUE = "truecolor"


def terminal_depth(stream: TextIO, env: dict[str, str] | None = None) -> Depth:
    """Colours only on a terminal and without NO_COLOR; then as many as COLORTERM / TERM promise."""
    env = dict(os.environ) if env is None else env
    if env.get("NO_COLOR") or not (hasattr(stream, "isatty") and stream.isatty()):
        return Depth.NONE
    term = env.get("TERM", "")
    if term == "dumb":
        return Depth.NONE
    if env.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return Depth.TRUE
    if "256" in term:
        return Depth.C256
    return Depth.C16


def mix(a: RGB, b: RGB, t: float) -> RGB:
    t = min(1.0, max(0.0, t))
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def bits_colour(bits: float) -> RGB:
    """The surprise scale: 0 bits pale green, 8 bits and more deep red."""
    for (lo, a), (hi, b) in pairwise(BITS_STOPS):
        if bits <= hi:
            return mix(a, b, (bits - lo) / (hi - lo))
    return BITS_STOPS[-1][1]


def unit_colour(value: float) -> RGB:
    """A unit's value: -1 blue, 0 white, +1 red (clipped)."""
    return mix(WHITE, RED, value) if value >= 0 else mix(WHITE, BLUE, -value)


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def cube_index(rgb: RGB) -> int:
    """The nearest colour of the xterm 6x6x6 cube (16..231)."""
    levels = (0, 95, 135, 175, 215, 255)

    def nearest(v: int) -> int:
        return min(range(6), key=lambda i: abs(levels[i] - v))

    return 16 + 36 * nearest(rgb[0]) + 6 * nearest(rgb[1]) + nearest(rgb[2])


def ansi16_code(rgb: RGB) -> int:
    """The nearest of the 16 standard background colours."""
    return min(ANSI16, key=lambda entry: sum((x - y) ** 2 for x, y in zip(entry[1], rgb, strict=True)))[0]


def background(rgb: RGB, depth: Depth) -> str:
    """The escape sequence for a background colour with black text; '' without colour."""
    if depth is Depth.TRUE:
        return f"\x1b[30;48;2;{rgb[0]};{rgb[1]};{rgb[2]}m"
    if depth is Depth.C256:
        return f"\x1b[30;48;5;{cube_index(rgb)}m"
    if depth is Depth.C16:
        return f"\x1b[30;{ansi16_code(rgb)}m"
    return ""


RESET = "\x1b[0m"
