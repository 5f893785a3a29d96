"""What a unit might track, computed from the text alone: one float per character per feature.

Each value describes the text up to and including that character, like the state the model has
after reading it: "quotes" is 1 from an opening `"` up to (not including) its closing `"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from charrnn.errors import ConfigError
from charrnn.vocab import codepoints

BUILTIN = (
    "quotes",  # inside "double quotes"
    "brackets",  # depth of ( [ { nesting
    "line_pos",  # characters since the last newline
    "indent",  # leading spaces/tabs of the current line
    "word_start",  # a letter/digit after a non-letter
    "in_word",  # a letter or digit
    "after_newline",  # the character just after a newline
    "comment",  # from a # to the end of its line
    "upper",  # an upper-case letter
    "digit",  # a digit
)


@dataclass(frozen=True)
class RegexFeature:
    """A user feature: characters inside a match of `pattern` are 1, the rest 0."""

    name: str
    pattern: re.Pattern[str]


def parse_feature(spec: str) -> RegexFeature:
    """`NAME=REGEX` from the command line; `^` and `$` match at every line."""
    name, sep, regex = spec.partition("=")
    if not sep or not name or not regex or not name.replace("_", "").isalnum():
        raise ConfigError(f"--feature {spec!r}: expected NAME=REGEX, e.g. vowel=[aeiou]")
    if name in BUILTIN:
        raise ConfigError(f"--feature {name}: a built-in feature has that name")
    try:
        return RegexFeature(name, re.compile(regex, re.MULTILINE))  # ^ and $ at each line
    except re.error as exc:
        raise ConfigError(f"--feature {name}: bad regular expression ({exc})") from None


def line_starts(is_newline: np.ndarray) -> np.ndarray:
    """For each character, the index where its line starts."""
    n = is_newline.size
    marks = np.where(is_newline, np.arange(n) + 1, 0)
    starts = np.maximum.accumulate(np.concatenate([[0], marks[:-1]])) if n else marks
    return starts.astype(np.int64)


def builtin_features(text: str) -> dict[str, np.ndarray]:
    """The built-in features of `text`, each float32 [len(text)]."""
    points = codepoints(text).astype(np.int64)
    n = points.size
    is_nl = points == ord("\n")
    quote = points == ord('"')
    toggles = np.cumsum(quote) % 2  # 1 after an odd number of quotes
    opens = np.isin(points, [ord(c) for c in "([{"]).astype(np.int64)
    closes = np.isin(points, [ord(c) for c in ")]}"]).astype(np.int64)
    depth = np.maximum(0, np.cumsum(opens - closes))
    starts = line_starts(is_nl)
    line_pos = np.arange(n) - starts
    alnum = np.fromiter((ch.isalnum() for ch in text), dtype=bool, count=n)
    prev_alnum = np.concatenate([[False], alnum[:-1]])
    after_nl = np.concatenate([[False], is_nl[:-1]])
    indent = np.zeros(n, dtype=np.int64)
    comment = np.zeros(n, dtype=bool)
    pos = 0
    for line in text.split("\n"):
        end = pos + len(line)
        indent[pos : end + 1] = len(line) - len(line.lstrip(" \t"))
        hash_at = line.find("#")
        if hash_at >= 0:
            comment[pos + hash_at : end] = True
        pos = end + 1
    return {
        "quotes": toggles.astype(np.float32),
        "brackets": depth.astype(np.float32),
        "line_pos": line_pos.astype(np.float32),
        "indent": indent[:n].astype(np.float32),
        "word_start": (alnum & ~prev_alnum).astype(np.float32),
        "in_word": alnum.astype(np.float32),
        "after_newline": after_nl.astype(np.float32),
        "comment": comment.astype(np.float32),
        "upper": np.fromiter((ch.isupper() for ch in text), dtype=np.float32, count=n),
        "digit": np.fromiter((ch.isdigit() for ch in text), dtype=np.float32, count=n),
    }


def regex_values(text: str, feature: RegexFeature) -> np.ndarray:
    """1 inside every match of the feature's pattern."""
    edges = np.zeros(len(text) + 1, dtype=np.int64)
    for match in feature.pattern.finditer(text):
        if match.end() > match.start():
            edges[match.start()] += 1
            edges[match.end()] -= 1
    return (np.cumsum(edges[:-1]) > 0).astype(np.float32)


def feature_matrix(text: str, extra: tuple[RegexFeature, ...] = ()) -> tuple[list[str], np.ndarray]:
    """(names, values [len(text), F] float32): the built-ins, then the user's regex features."""
    values = builtin_features(text)
    for feature in extra:
        values[feature.name] = regex_values(text, feature)
    names = list(values)
    return names, np.stack([values[name] for name in names], axis=1)
