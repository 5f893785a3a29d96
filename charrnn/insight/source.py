"""The text a command looks at: a file, `-` (stdin), or literal text (`--text`, or an argument that
is plainly not a file name); its ids."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import ConfigError, InputError
from charrnn.files import display_path, read_utf8
from charrnn.insight.options import Unknown
from charrnn.vocab import Vocab, describe_chars


@dataclass(frozen=True)
class Scored:
    """The text as the model reads it (unknown characters removed under `skip`) and its ids."""

    text: str
    ids: np.ndarray
    skipped: tuple[str, ...] = ()  # distinct characters dropped, sorted
    dropped: int = 0  # how many characters were dropped


@dataclass(frozen=True)
class Source:
    """The text to look at, and how a page names it (the file's name, stdin, or the text's start)."""

    text: str
    name: str


LITERAL_HINT = "; to score the argument itself as text, use --text"
# The end of a file name: a dot, then a short extension with a letter in it (".txt", ".py", ".md5").
EXTENSION = re.compile(r"[^\s.]\.(?=[A-Za-z0-9]{0,9}[A-Za-z])[A-Za-z0-9]{1,10}\Z")


def looks_like_path(arg: str) -> bool:
    """One line with a slash in it or a file extension at its end: meant as a file, not as text."""
    return "\n" not in arg and "\r" not in arg and ("/" in arg or os.sep in arg or EXTENSION.search(arg) is not None)


def read_source(arg: str | None, literal: str | None = None) -> Source:
    """The text a command looks at: `--text` as given, `-` (stdin), a file, or the argument as text.

    An argument that names something on disk must be a readable regular file; one that looks like
    a path (see `looks_like_path`) but names nothing is a mistyped file name, never text to score.
    Anything else is the text itself, so `charrnn explain 'To be, or not to be'` keeps working."""
    if (arg is None) == (literal is None):
        raise ConfigError("give the text: a file, - for stdin, or --text TEXT (one of them)")
    if literal is not None:
        return Source(literal_text(literal, "--text"), short(literal))
    assert arg is not None
    if arg == "-":
        return Source(read_utf8(arg, "text"), "stdin")
    if os.path.lexists(arg) or looks_like_path(arg):
        return Source(read_utf8(arg, "text", LITERAL_HINT), display_path(Path(arg).name))
    return Source(literal_text(arg, "the text argument"), short(arg))


def literal_text(arg: str, what: str) -> str:
    """Text from the command line: its bytes must be UTF-8 (as a file's must)."""
    try:
        return os.fsencode(arg).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not valid UTF-8 (byte {exc.start}); give it in a UTF-8 file") from None


def short(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


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
