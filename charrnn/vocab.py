"""Vocab: the sorted set of Unicode code points a model knows, and vectorised text <-> id mapping."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from charrnn.errors import InputError

UNICODE_SIZE = 0x110000  # code points 0..U+10FFFF


def codepoints(text: str) -> np.ndarray:
    """The code points of `text` as uint32, without a Python loop per character."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def decode_codepoints(points: np.ndarray) -> str:
    """Inverse of `codepoints`."""
    return np.asarray(points, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def smallest_id_dtype(size: int) -> np.dtype:
    """uint8 for up to 256 symbols, then uint16, then uint32: ids take the least memory that fits."""
    for dtype in (np.uint8, np.uint16):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


def describe_chars(chars: list[str], limit: int = 10) -> str:
    """Readable list of characters for error messages: `'é' (U+00E9), '\\t' (U+0009)`."""
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:limit])
    more = len(chars) - limit
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Vocab:
    """Characters sorted by code point; id i is `chars[i]`. Lives inside every checkpoint."""

    chars: str
    _points: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        points = codepoints(self.chars)
        if points.size == 0:
            raise InputError("a vocabulary needs at least one character")
        if np.any(np.diff(points.astype(np.int64)) <= 0):
            raise InputError("vocabulary characters must be unique and sorted by code point")
        surrogates = points[(points >= 0xD800) & (points <= 0xDFFF)]
        if surrogates.size:  # JSON's \ud800 escapes can carry them; no decoded text holds one
            raise InputError(f"vocabulary holds U+{int(surrogates[0]):04X}, a lone surrogate, not a character")
        object.__setattr__(self, "_points", points)

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls.from_codepoints(codepoints(text))

    @classmethod
    def from_codepoints(cls, points: np.ndarray) -> Vocab:
        return cls(decode_codepoints(np.unique(points)))

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Vocab:
        """The code points with a non-zero count (`counts` is indexed by code point)."""
        return cls(decode_codepoints(np.flatnonzero(counts).astype("<u4")))

    @property
    def size(self) -> int:
        return int(self._points.size)

    @property
    def id_dtype(self) -> np.dtype:
        return smallest_id_dtype(self.size)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocab, sorted, each once."""
        points = np.unique(codepoints(text))
        missing = points[~np.isin(points, self._points)]
        return list(decode_codepoints(missing))

    def encode_points(self, points: np.ndarray) -> np.ndarray:
        """Ids for code points; raises InputError naming any character the vocab lacks."""
        idx = np.searchsorted(self._points, points)
        idx_clipped = np.minimum(idx, self.size - 1)
        bad = self._points[idx_clipped] != points
        if np.any(bad):
            missing = list(decode_codepoints(np.unique(points[bad])))
            raise InputError(f"{len(missing)} character(s) not in the model's vocabulary: {describe_chars(missing)}")
        return idx_clipped.astype(self.id_dtype)

    def id_table(self) -> np.ndarray:
        """Id of every code point (0 where the vocab lacks it): `table[points]` encodes a block at once."""
        table = np.zeros(UNICODE_SIZE, dtype=self.id_dtype)
        table[self._points] = np.arange(self.size, dtype=self.id_dtype)
        return table

    def check_covers(self, points: np.ndarray) -> None:
        """InputError naming the characters among `points` (unique code points) the vocab lacks."""
        self.encode_points(points.astype("<u4"))

    def encode(self, text: str) -> np.ndarray:
        return self.encode_points(codepoints(text))

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return decode_codepoints(self._points[np.asarray(ids, dtype=np.int64)])

    def index(self, char: str) -> int | None:
        """Id of one character, or None."""
        i = int(np.searchsorted(self._points, ord(char)))
        return i if i < self.size and self._points[i] == ord(char) else None
