"""Constrained sampling: every walk through `allowed` stays a prefix of a full match, and `finishing`
completes it in `distance` steps; patterns that cannot be followed fail as ConfigError naming where."""

from __future__ import annotations

import itertools
import re
import string

import numpy as np
import pytest

from charrnn.errors import ConfigError
from charrnn.sampling import constrain
from charrnn.sampling.constrain import Constraint, choice_pattern

SHAKESPEARE = sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
PRINTABLE = sorted(set(string.printable) - set("\x0b\x0c\r"))
UNICODE = [*PRINTABLE, "é", "É", "٣", "\u00a0", "—", "\u2019"]  # a Unicode letter, digit, space; punctuation

DATE = r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])( [A-Z][a-z]+){1,3}\."

PATTERNS = [
    (DATE, PRINTABLE),
    (r"[A-Z][A-Z ]*:\n[^\n]{1,40}\n", SHAKESPEARE),  # a speaker's name, then a line
    (r"[A-Za-z_]\w{0,8}", PRINTABLE),  # an identifier
    (r"^(yes|no|maybe)$", SHAKESPEARE),
    (r"\w+ \W\s\d?", UNICODE),  # re's Unicode classes, over a vocab with non-ASCII members
    (r"[^\w\s]{2}|\D\S", UNICODE),
    (r"(?i)[a-c]+É?", UNICODE),
    (r".{0,5}x", PRINTABLE),  # `.` is not a newline
    (r"(?s).{2}", SHAKESPEARE),  # ...unless (?s)
    (r"[]a-c]+[^]\n]", PRINTABLE),  # a leading `]` is a literal
    (r"\u00e9\N{EM DASH}\x41\0?\.\{a{,2}(?#note)", [*UNICODE, "\0", "{"]),
    (r"a{,}b{", PRINTABLE),
    (r"", PRINTABLE),
    (r"a*", SHAKESPEARE),
    (choice_pattern(["a.b", "(x)", "a", "?\n", "[]"]), PRINTABLE),
]


def walk(constraint: Constraint, chars: list[str], rng: np.random.Generator, steps: int) -> tuple[int, str]:
    """Follow random allowed characters for up to `steps` steps (stopping when none is allowed)."""
    state, text = constraint.start, ""
    for _ in range(steps):
        allowed = np.flatnonzero(constraint.allowed(state))
        if len(allowed) == 0:
            break
        char_id = int(rng.choice(allowed))
        state = constraint.advance(state, char_id)
        text += chars[char_id]
    return state, text


@pytest.mark.parametrize(("pattern", "chars"), PATTERNS)
def test_walks_stay_prefixes_of_full_matches(pattern: str, chars: list[str]) -> None:
    constraint = Constraint.compile(pattern, chars)
    rng = np.random.default_rng(0)
    for walk_id in range(40):
        state, text = walk(constraint, chars, rng, steps=walk_id % 20)
        assert constraint.accepting(state) == bool(re.fullmatch(pattern, text)), text
        if not constraint.allowed(state).any():
            assert constraint.accepting(state), text  # the engine ends a sample here
        # Finishing: each forced step is one closer, and the distance is exactly what it takes.
        remaining = constraint.distance(state)
        while not constraint.accepting(state):
            finishing = constraint.finishing(state)
            assert finishing.any() and not (finishing & ~constraint.allowed(state)).any()
            state = constraint.advance(state, int(rng.choice(np.flatnonzero(finishing))))
            remaining -= 1
            assert constraint.distance(state) == remaining
        assert remaining == 0


@pytest.mark.parametrize(("pattern", "chars"), PATTERNS)
def test_finished_text_is_a_full_match(pattern: str, chars: list[str]) -> None:
    constraint = Constraint.compile(pattern, chars)
    rng = np.random.default_rng(1)
    for steps in range(0, 30, 3):
        state, text = walk(constraint, chars, rng, steps)
        budget = constraint.distance(state)
        while not constraint.accepting(state):
            char_id = int(rng.choice(np.flatnonzero(constraint.finishing(state))))
            state = constraint.advance(state, char_id)
            text += chars[char_id]
            budget -= 1
        assert budget == 0
        assert re.fullmatch(pattern, text), (pattern, text)
        assert constraint.finishing(state).sum() == 0


def test_allowed_is_exactly_the_live_next_characters() -> None:
    """Over a small vocab, compare with brute force: a char is allowed iff some completion fully matches."""
    chars = list("ab-1\n")
    pattern = r"a+(-\d)?b?"
    constraint = Constraint.compile(pattern, chars)
    texts = ["".join(t) for n in range(7) for t in itertools.product(chars, repeat=n)]
    matches = [t for t in texts if re.fullmatch(pattern, t)]
    for text in (t for t in texts if len(t) <= 3):  # every live text completes within 2 more chars
        state = constraint.start
        for c in text:
            if not constraint.allowed(state)[chars.index(c)]:
                assert not any(m.startswith(text) for m in matches)
                break
            state = constraint.advance(state, chars.index(c))
        else:
            assert constraint.accepting(state) == (text in matches)
            for char_id, c in enumerate(chars):
                assert constraint.allowed(state)[char_id] == any(m.startswith(text + c) for m in matches)


def test_date_example() -> None:
    chars = PRINTABLE
    constraint = Constraint.compile(DATE, chars)
    assert constraint.distance(constraint.start) == len("1900-01-01 Xx.")
    allowed = {chars[i] for i in np.flatnonzero(constraint.allowed(constraint.start))}
    assert allowed == {"1", "2"}
    state = constraint.start
    for c in "2024-1":
        state = constraint.advance(state, chars.index(c))
    assert {chars[i] for i in np.flatnonzero(constraint.allowed(state))} == {"0", "1", "2"}


def test_rows_are_cached_and_read_only() -> None:
    constraint = Constraint.compile("[a-c]+", SHAKESPEARE)
    row = constraint.allowed(constraint.start)
    assert row is constraint.allowed(constraint.start)
    assert row.dtype == bool and row.shape == (len(SHAKESPEARE),)
    with pytest.raises(ValueError):
        row[0] = True


def test_advance_rejects_a_disallowed_char() -> None:
    constraint = Constraint.compile("ab", SHAKESPEARE)
    with pytest.raises(ValueError, match="not allowed"):
        constraint.advance(constraint.start, SHAKESPEARE.index("b"))


def test_empty_match_only_when_the_regex_accepts_it() -> None:
    assert Constraint.compile("a*", SHAKESPEARE).accepting(0)
    assert not Constraint.compile("a+", SHAKESPEARE).accepting(0)
    only_empty = Constraint.compile("", SHAKESPEARE)
    assert only_empty.accepting(0) and not only_empty.allowed(0).any()


def test_a_class_missing_from_the_vocab_is_empty() -> None:
    """`\\d` over a vocab without digits matches nothing, so only the other branch is left."""
    constraint = Constraint.compile(r"\d+|ab", list("ab"))
    assert constraint.allowed(constraint.start).tolist() == [True, False]


def test_choice_pattern_takes_each_choice_literally() -> None:
    choices = ["a.b", "(x)", "a|b", "\\d", ""]
    pattern = choice_pattern(choices)
    for choice in choices:
        assert re.fullmatch(pattern, choice)
    assert not re.fullmatch(pattern, "axb")
    assert not re.fullmatch(pattern, "x")


def test_choice_pattern_rejects_an_empty_list() -> None:
    with pytest.raises(ConfigError, match="guided_choice"):
        choice_pattern([])


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(ab", "not a valid regular expression"),
        ("a{3,1}", "not a valid regular expression"),
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"a(?=b)b", "lookaround"),
        (r"(?<!a)b", "lookaround"),
        (r"a\bb", "word boundary"),
        (r"a|^b", "anchors are allowed only at its ends"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(?x)a b", "does not support"),
        ("z+", "no text made of the model's characters matches --match 'z+'; the model has no 'z'"),
        (r"[0-24-9]+", "no text made of the model's characters matches"),
    ],
)
def test_errors_name_where(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        Constraint.compile(pattern, SHAKESPEARE[:-1])  # no 'z'
    assert "--match" in str(error.value) and "\n" not in str(error.value)


def test_errors_name_the_given_where() -> None:
    with pytest.raises(ConfigError, match=r"^guided_regex"):
        Constraint.compile("(", SHAKESPEARE, where="guided_regex")


def test_too_complex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constrain, "MAX_STATES", 500)
    with pytest.raises(ConfigError, match=r"--match .* is too complex"):
        Constraint.compile("(a|b)*a(a|b){12}", SHAKESPEARE)  # 2**13 states in interegular's DFA
    with pytest.raises(ConfigError, match="too complex"):
        Constraint.compile(".{0,1000}", SHAKESPEARE)  # small DFAs, but many states


def test_many_states_compile_quickly() -> None:
    constraint = Constraint.compile(".{0,1000}", SHAKESPEARE)
    assert constraint.states == 1001
    state = constraint.start
    for _ in range(1000):
        assert constraint.allowed(state).sum() == len(SHAKESPEARE) - 1  # all but the newline
        state = constraint.advance(state, 0 if SHAKESPEARE[0] != "\n" else 1)
    assert constraint.accepting(state) and not constraint.allowed(state).any()
