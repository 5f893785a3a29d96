"""`neurons` as data: run the finder, pick units worth showing, and say it as rows, JSON and a page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charrnn.insight.features import RegexFeature, feature_matrix
from charrnn.insight.neurons import NeuronReport, UnitScore, record
from charrnn.insight.page import PAGE_CHARS, PageData, PageUnit
from charrnn.insight.surprisal import score
from charrnn.insight.units import UnitRef
from charrnn.model import CharRNN
from charrnn.vocab import Vocab


@dataclass(frozen=True)
class Found:
    text: str
    report: NeuronReport
    present: tuple[str, ...]  # features that vary over this text (the others cannot be correlated)
    top: int

    def per_feature(self) -> dict[str, list[UnitScore]]:
        return {name: self.report.best(name, self.top) for name in self.present}

    def picks(self, count: int = 12) -> list[UnitScore]:
        """The finder's picks: the best unit of each feature, then the most selective units."""
        seen: set[UnitRef] = set()
        out: list[UnitScore] = []
        for scores in self.per_feature().values():
            for best in scores[:1]:
                if best.unit not in seen:
                    seen.add(best.unit)
                    out.append(best)
        for pick in self.report.selective(count):
            if len(out) >= count:
                break
            if pick.unit not in seen:
                seen.add(pick.unit)
                out.append(pick)
        return out[:count]

    def to_json(self) -> dict[str, Any]:
        def row(score: UnitScore) -> dict[str, Any]:
            return {"unit": score.unit.name, "feature": score.feature, "r": round(score.r, 6)}

        absent = [name for name in self.report.features if name not in self.present]
        return {
            "chars": self.report.chars,
            "units": len(self.report.units),
            "features": {name: [row(s) for s in scores] for name, scores in self.per_feature().items()},
            "absent_features": absent,
            "selective": [row(s) for s in self.report.selective(10)],
            "traced": {unit.name: [round(float(v), 4) for v in values] for unit, values in self.report.traces.items()},
        }


def find_units(
    model: CharRNN,
    ids: np.ndarray,
    text: str,
    device: torch.device,
    extra: tuple[RegexFeature, ...] = (),
    trace: tuple[UnitRef, ...] = (),
    top: int = 3,
) -> Found:
    """Correlate every unit with every feature over the whole text, streaming."""
    names, values = feature_matrix(text, extra)
    present = tuple(name for j, name in enumerate(names) if values[:, j].min() != values[:, j].max())
    report = record(model, ids, device, (names, values), trace)
    return Found(text, report, present, top)


def display_values(unit: UnitRef, values: np.ndarray) -> np.ndarray:
    """What colours a unit: h as it is (already -1..1), c through tanh."""
    return np.tanh(values) if unit.kind == "c" else values


def unit_page(
    model: CharRNN,
    ids: np.ndarray,
    found: Found,
    device: torch.device,
    title: str,
    vocab: Vocab,
    extra_units: tuple[UnitRef, ...] = (),
    limit: int = PAGE_CHARS,
) -> PageData:
    """The page: the finder's picks first, then the units asked for; the first `limit` characters."""
    labels = {s.unit: f"{s.feature} r={s.r:+.2f}" for s in found.picks()}
    units = list(labels) + [u for u in extra_units if u not in labels]
    shown = found.text[:limit]
    again = record(model, ids[: len(shown)], device, None, tuple(units))
    page_units = [PageUnit(u.name, labels.get(u, "asked for"), display_values(u, again.traces[u])) for u in units]
    vocab_chars = vocab.chars
    guessed = score(model, ids[: len(shown)], device, 5)
    bits = np.concatenate([[np.nan], guessed.bits]).astype(np.float32)
    top: list[list[tuple[str, float]]] = [[]] + [
        [(vocab_chars[int(i)], float(p)) for i, p in zip(guessed.top_ids[j], guessed.top_probs[j], strict=True)]
        for j in range(guessed.chars)
    ]
    note = (
        "" if len(shown) == len(found.text) else f"showing the first {len(shown):,} of {len(found.text):,} characters"
    )
    summary = f"{found.report.chars:,} characters, {len(found.report.units):,} units; pick a unit to colour by it"
    return PageData(title, shown, summary, bits, top, page_units, note)
