"""`explain` as data: the text's surprisal per character, its summary, JSON and the page."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from charrnn.insight.page import PAGE_CHARS, PageData
from charrnn.insight.surprisal import Span, Surprisal, worst_spans
from charrnn.vocab import Vocab


@dataclass(frozen=True)
class Explained:
    """A text and its surprisal; character j is predicted by prediction j-1 (character 0 by nothing)."""

    text: str
    surprisal: Surprisal
    vocab: Vocab

    def char_bits(self) -> np.ndarray:
        """Bits per character of the text, nan for the first."""
        return np.concatenate([[np.nan], self.surprisal.bits]).astype(np.float32)

    def guesses(self, j: int) -> list[tuple[str, float]]:
        """The model's top-k guesses for character j (j >= 1), likeliest first."""
        ids = self.surprisal.top_ids[j - 1]
        probs = self.surprisal.top_probs[j - 1]
        return [(self.vocab.chars[int(i)], float(p)) for i, p in zip(ids, probs, strict=True)]

    def worst(self, width: int = 16, count: int = 3) -> list[Span]:
        return worst_spans(self.surprisal.bits, width, count)

    def summary(self) -> dict[str, Any]:
        s = self.surprisal
        return {
            "bits_per_char": s.mean_bits,
            "nats_per_char": s.mean_nats,
            "perplexity": math.exp(min(s.mean_nats, 700.0)),
            "chars_scored": s.chars,
            "worst_spans": [
                {"start": w.start, "end": w.end, "bits_per_char": w.mean_bits, "text": self.text[w.start : w.end]}
                for w in self.worst()
            ],
        }

    def summary_line(self) -> str:
        s = self.surprisal
        return f"{s.mean_bits:.4f} bits/char  {s.mean_nats:.4f} nats/char  ({s.chars:,} characters scored)"

    def to_json(self) -> dict[str, Any]:
        """The summary and one object per character: char, bits (null for the first) and the top-k."""
        bits = self.char_bits()
        chars: list[dict[str, Any]] = []
        for j, ch in enumerate(self.text):
            top = [] if j == 0 else [{"char": c, "p": round(p, 6)} for c, p in self.guesses(j)]
            chars.append({"i": j, "char": ch, "bits": None if j == 0 else round(float(bits[j]), 6), "top": top})
        return {"summary": self.summary(), "chars": chars}

    def page(self, title: str, limit: int = PAGE_CHARS) -> PageData:
        shown = self.text[:limit]
        note = (
            "" if len(shown) == len(self.text) else f"showing the first {len(shown):,} of {len(self.text):,} characters"
        )
        top = [[] if j == 0 else self.guesses(j)[:5] for j in range(len(shown))]
        return PageData(title, shown, self.summary_line(), self.char_bits()[: len(shown)], top, note=note)
