from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charrnn.errors import InputError
from charrnn.vocab import Vocab, smallest_id_dtype


def test_vocab_is_sorted_code_points() -> None:
    vocab = Vocab.from_text("hello, wörld ✓")
    assert vocab.chars == "".join(sorted(set("hello, wörld ✓")))
    assert vocab.size == len(set("hello, wörld ✓"))


def test_encode_decode_round_trip_uses_smallest_dtype() -> None:
    text = "abcabc\n"
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == text


def test_dtype_grows_with_vocab() -> None:
    assert smallest_id_dtype(256) == np.uint8
    assert smallest_id_dtype(257) == np.uint16
    assert smallest_id_dtype(70_000) == np.uint32
    cjk = "".join(chr(0x4E00 + i) for i in range(300))
    vocab = Vocab.from_text(cjk)
    assert vocab.id_dtype == np.uint16
    assert vocab.decode(vocab.encode(cjk)) == cjk


def test_unknown_characters_are_named() -> None:
    vocab = Vocab.from_text("abc")
    assert vocab.unknown("abz€") == ["z", "€"]
    with pytest.raises(InputError, match="'z'"):
        vocab.encode("abz")


def test_astral_characters_are_one_symbol() -> None:
    text = "a😀b😀"
    vocab = Vocab.from_text(text)
    assert vocab.size == 3
    assert vocab.decode(vocab.encode(text)) == text


def test_rejects_unsorted_or_duplicate_chars() -> None:
    with pytest.raises(InputError):
        Vocab("ba")
    with pytest.raises(InputError):
        Vocab("aab")


@given(st.text(min_size=1))
def test_round_trip_any_text(text: str) -> None:
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
