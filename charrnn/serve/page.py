"""The playground page: one self-contained HTML file (no CDN, works offline), shipped as package data."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def page_html() -> str:
    return files("charrnn.serve").joinpath("playground.html").read_text(encoding="utf-8")
