"""The HTML page in a real browser (Debian's Chromium through Playwright): hover a character and read
the tooltip, switch to a unit and check which characters turn red, take a screenshot.

Skips where /usr/bin/chromium or the playwright package is missing. Set CHARRNN_SCREENSHOT=PATH to
keep the screenshot (the README's docs/explain.png is made so).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from insight_models import QUOTE_VOCAB, quote_model, quote_text

from charrnn.insight.features import builtin_features
from charrnn.insight.finder import find_units, unit_page
from charrnn.insight.page import build_page
from tests.browser import chromium


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


def test_page_in_chromium(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = quote_text(lines=24)
    model, cpu = quote_model(), torch.device("cpu")
    ids = QUOTE_VOCAB.encode(text)
    found = find_units(model, ids, text, cpu)
    page_file = tmp_path / "page.html"
    page_file.write_text(build_page(unit_page(model, ids, found, cpu, "quote unit", QUOTE_VOCAB)), encoding="utf-8")

    page = browser.new_page(viewport={"width": 900, "height": 620})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.as_uri())

    inside = text.index('"') + 2  # a character inside the first quotes
    page.hover(f"#text span[data-i='{inside}']")
    tip = page.inner_text("#tip")
    assert tip.startswith(f"#{inside}  {text[inside]!r}".replace("'", '"'))
    assert re.search(r"\d+\.\d\d bits", tip) and "model's guesses" in tip
    assert len(re.findall(r"\d+\.\d%", tip)) == 5

    options = page.eval_on_selector_all("#mode option", "els => els.map(e => [e.value, e.textContent])")
    assert options[0][0] == "bits"
    value, label = options[1]  # the finder's first pick: the quote unit
    assert label.startswith(("0:h:0", "0:c:0")) and "quotes" in label
    page.select_option("#mode", value)
    colours = page.eval_on_selector_all("#text span", "els => els.map(e => getComputedStyle(e).backgroundColor)")
    quoted = builtin_features(text)["quotes"] > 0.5
    assert len(colours) == len(text)
    red = [int(r) > int(b) + 60 for r, _, b in (re.findall(r"\d+", c)[:3] for c in colours)]
    assert red == quoted.tolist()

    page.mouse.move(1, 1)  # leave, then come back: the tooltip now shows the unit too
    page.hover(f"#text span[data-i='{inside}']")
    assert re.search(r"unit 0:[hc]:0: 0\.7\d\d", page.inner_text("#tip"))
    assert page.locator("#chart path").count() == 1
    shot = tmp_path / "explain.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not errors
    assert all(url.startswith("file:") for url in requests), requests
    keep = os.environ.get("CHARRNN_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
