"""The text a command looks at: an argument that is literal text, a file, or `-` (stdin); its ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import InputError
from charrnn.files import read_utf8
from charrnn.insight.options import Unknown
from charrnn.vocab import Vocab, describe_chars


@dataclass(frozen=True)
class Scored:
    """The text as the model reads it (unknown characters removed under `skip`) and its ids."""

    text: str
    ids: np.ndarray
    skipped: tuple[str, ...] = ()  # distinct characters dropped, sorted
    dropped: int = 0  # how many characters were dropped


def read_text(arg: str) -> str:
    """`-` is stdin, an existing file is read, anything else is the text itself."""
    if arg != "-":
        try:
            is_file = Path(arg).is_file()
        except OSError:  # a very long literal text is not a path
            is_file = False
        if not is_file:
            return arg
    return read_utf8(arg, "text")


def encode_text(text: str, vocab: Vocab, unknown: Unknown = Unknown.ERROR, minimum: int = 2) -> Scored:
    """Ids of `text`; unknown characters are named (error) or dropped (skip). At least `minimum` chars."""
    if not text:
        raise InputError("the text is empty; give some text, a file or - for stdin")
    missing = vocab.unknown(text)
    dropped = 0
    if missing:
        if unknown is Unknown.ERROR:
            raise InputError(
                f"{len(missing)} character(s) not in the model's vocabulary: {describe_chars(missing)}"
                " (--unknown skip scores the rest)"
            )
        gone = set(missing)
        dropped = sum(text.count(ch) for ch in gone)
        text = "".join(ch for ch in text if ch not in gone)
    if len(text) < minimum:
        raise InputError(f"the text has {len(text)} known character(s); at least {minimum} are needed")
    return Scored(text, vocab.encode(text), tuple(missing), dropped)
