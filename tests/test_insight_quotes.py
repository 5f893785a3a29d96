"""A hand-built LSTM whose unit 0 tracks quote state: the finder must find it, the renderers must draw it."""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from conftest import run_cli
from insight_models import QUOTE_VOCAB, quote_model, quote_text, save

from charrnn.insight.features import builtin_features
from charrnn.insight.finder import find_units
from charrnn.insight.palette import Depth
from charrnn.insight.terminal import render_unit
from charrnn.insight.units import UnitRef

CPU = torch.device("cpu")
CELL = re.compile(r"\x1b\[30;48;2;(\d+);(\d+);(\d+)m(.)\x1b\[0m", re.S)


def quoted(text: str) -> np.ndarray:
    return builtin_features(text)["quotes"] > 0.5


def test_finder_ranks_the_quote_unit_first() -> None:
    text = quote_text()
    found = find_units(quote_model(), QUOTE_VOCAB.encode(text), text, CPU)
    best = found.report.best("quotes", 3)
    assert best[0].unit in (UnitRef(0, "h", 0), UnitRef(0, "c", 0))
    assert best[0].r > 0.95
    # the other units are random: far from it, apart from unit 0's own h/c twin
    others = [s for s in found.report.best("quotes", 10) if s.unit.index != 0]
    assert abs(others[0].r) < 0.8
    assert found.picks()[0].unit == best[0].unit


def test_terminal_colours_exactly_the_quoted_spans() -> None:
    text = quote_text(lines=30)
    unit = UnitRef(0, "h", 0)
    found = find_units(quote_model(), QUOTE_VOCAB.encode(text), text, CPU, trace=(unit,))
    out = render_unit(text, found.report.traces[unit].tolist(), Depth.TRUE, unit.name)
    body, _, legend = out.rpartition("\n\n")
    assert "unit 0:h:0" in legend
    cells = CELL.findall(body)
    assert len(cells) == len(text)
    red = np.array([int(r) > int(b) + 60 for r, _, b, _ in cells])
    assert np.array_equal(red, quoted(text))
    assert "".join(ch for *_, ch in cells) == text.replace("\n", "↵")


def test_plain_marks_exactly_the_quoted_spans() -> None:
    text = quote_text(lines=10)
    unit = UnitRef(0, "c", 0)
    found = find_units(quote_model(), QUOTE_VOCAB.encode(text), text, CPU, trace=(unit,))
    out = render_unit(text, np.tanh(found.report.traces[unit]).tolist(), Depth.NONE, unit.name)
    assert "\x1b" not in out
    rows = out.split("\n")
    marks = "".join(rows[i + 1].ljust(len(rows[i])) for i in range(0, 2 * text.count("\n"), 2))
    assert np.array_equal(np.array([m == "+" for m in marks]), quoted(text))


def test_neurons_cli_finds_and_draws_the_unit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = save(quote_model(), QUOTE_VOCAB, tmp_path / "quotes.safetensors")
    corpus = tmp_path / "q.txt"
    corpus.write_text(quote_text(), encoding="utf-8")
    result = run_cli("neurons", str(corpus), "-c", str(ckpt), "--json", "--feature", "bees=b+")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["features"]["quotes"][0]["unit"] in ("0:h:0", "0:c:0")
    assert data["features"]["bees"][0]["r"] != 0
    assert "brackets" in data["absent_features"]
    page = tmp_path / "q.html"
    drawn = run_cli("neurons", 'a "ab" b.', "-c", str(ckpt), "--unit", "0:0", "--html", str(page))
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.decode().startswith('a "ab" b.\n..+++----\n')  # NO_COLOR: marks, no escapes
    assert b"\x1b" not in drawn.stdout
    assert "0:h:0" in page.read_text(encoding="utf-8")
