"""One self-contained HTML page (no network: styles, script and data inline) showing a text
coloured by surprise or by a unit's value, with the model's guesses on hover or tap."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charrnn.insight.page_template import TEMPLATE

PLACEHOLDER = re.compile(r"__(TITLE|DATA)__")
PAGE_CHARS = 20_000  # characters shown on a page; a longer text is cut (the summary covers all of it)


@dataclass(frozen=True)
class PageUnit:
    name: str
    label: str  # e.g. "quotes r=+0.93"
    values: np.ndarray  # [chars], already in -1..1 for colouring


@dataclass(frozen=True)
class PageData:
    title: str
    text: str
    summary_line: str
    bits: np.ndarray | None = None  # [chars], nan where not scored
    top: list[list[tuple[str, float]]] | None = None  # per char, the model's guesses for it
    units: list[PageUnit] = field(default_factory=list)
    note: str = ""


def rounded(values: np.ndarray, digits: int = 3) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), digits) for v in values]


def page_json(data: PageData) -> dict[str, Any]:
    """The page's data as plain JSON (what the script reads)."""
    return {
        "title": data.title,
        "text": data.text,
        "summary_line": data.summary_line,
        "note": data.note,
        "bits": None if data.bits is None else rounded(data.bits),
        "top": None if data.top is None else [[[ch, round(p, 4)] for ch, p in guesses] for guesses in data.top],
        "units": [{"name": u.name, "label": u.label, "values": rounded(u.values)} for u in data.units],
    }


def build_page(data: PageData) -> str:
    """The whole page as one string; `<` inside the data is escaped so no text can end the script.

    The placeholders are filled in one pass over the template: a value that holds a placeholder
    (a file named `__DATA__.txt` in the title) is never filled in again."""
    payload = json.dumps(page_json(data), ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    payload = payload.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    values = {"TITLE": html.escape(data.title), "DATA": payload}
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], TEMPLATE)
