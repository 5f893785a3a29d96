"""Constrained sampling: a regex compiled to a DFA over the model's characters.

A character model can be held to a regex exactly: at each step, mask the characters after which no
full match is reachable any more. `interegular` turns Python-style regex syntax into a DFA over
classes of characters; this module maps those classes onto the vocabulary, keeps only the states
reachable over vocab characters, and precomputes for each state which characters keep a full match
reachable (`allowed`) and which bring it strictly closer (`finishing`), so that the engine's per-step
cost is a list lookup.

Semantics follow `re.fullmatch` over the model's characters: `.` does not match a newline (Python's
default; `(?s)` makes it), `\\d \\w \\s` and their negations are Unicode-aware as in `re` (they are
expanded to the vocab characters `re` says they match, since `interegular` knows only their ASCII
parts), `^`/`\\A` at the start and `$`/`\\Z` at the end are accepted and redundant.
Backreferences, lookarounds, conditionals, word boundaries and anchors elsewhere are rejected: a DFA
cannot follow them.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import interegular
import interegular.fsm
import numpy as np

from charrnn.errors import ConfigError
from charrnn.vocab import describe_chars

MAX_STATES = 100_000  # reachable DFA states; beyond this a pattern is "too complex"
FAR = np.iinfo(np.int32).max  # distance of a dead state (no accepting state reachable)


class Constraint:
    """A regex compiled against a vocabulary (the model's characters, in id order)."""

    def __init__(
        self, start: int, next_by_class: np.ndarray, class_of: np.ndarray, distances: np.ndarray, pattern: str
    ) -> None:
        self.start = start
        self.pattern = pattern
        self._next = next_by_class  # int32 [states, classes + 1]: next state per symbol class, -1 for none
        self._class_of = class_of  # intp [V]: each vocab char's symbol class (the extra column: none)
        self._distance = distances  # int32 [states]: fewest chars to an accepting state, FAR if none
        self._allowed: list[np.ndarray | None] = [None] * len(distances)  # vocab rows, built on first use
        self._finishing: list[np.ndarray | None] = [None] * len(distances)

    @classmethod
    def compile(cls, pattern: str, chars: Sequence[str], where: str = "--match") -> Constraint:
        """The constraint for `pattern` over `chars`; ConfigError (naming `where`) if it cannot be used."""
        dfa = _dfa(pattern, chars, where)
        classes = max(dfa.alphabet.by_transition, default=-1) + 1
        class_of = np.array([_symbol_class(dfa.alphabet, c, classes) for c in chars], dtype=np.intp)
        used = set(class_of[class_of < classes].tolist())  # only classes that some vocab char falls in
        # Breadth-first over vocab characters from the start: DFA states only other characters reach
        # never occur, and the rest get numbers 0.. in the order they are found.
        number = {dfa.initial: 0}
        order = [dfa.initial]
        rows: list[np.ndarray] = []
        predecessors: list[set[int]] = [set()]
        for state in order:  # grows while iterating
            row = np.full(classes + 1, -1, dtype=np.int32)
            for symbol, target in dfa.map.get(state, {}).items():
                if symbol not in used:
                    continue
                if target not in number:
                    if len(order) >= MAX_STATES:
                        raise _too_complex(pattern, where)
                    number[target] = len(order)
                    order.append(target)
                    predecessors.append(set())
                row[symbol] = number[target]
                predecessors[number[target]].add(number[state])
            rows.append(row)
        finals = [number[state] for state in dfa.finals if state in number]
        distances = _distances_to(finals, predecessors)
        if distances[0] == FAR:
            raise ConfigError(_no_match(pattern, chars, where, dfa.alphabet))
        return cls(0, np.stack(rows), class_of, distances, pattern)

    @property
    def states(self) -> int:
        """How many states are reachable over the vocabulary (dead ones included)."""
        return len(self._distance)

    def allowed(self, state: int) -> np.ndarray:
        """bool [V], read-only: the characters after which a full match is still reachable."""
        row = self._allowed[state]
        if row is None:
            row = self._allowed[state] = self._build_rows(state)[0]
        return row

    def finishing(self, state: int) -> np.ndarray:
        """bool [V], read-only: allowed characters that bring a full match one character closer.

        Masking to these once the requested length is reached ends every sample in a full match
        within `distance(state)` more characters.
        """
        row = self._finishing[state]
        if row is None:
            row = self._finishing[state] = self._build_rows(state)[1]
        return row

    def advance(self, state: int, char_id: int) -> int:
        """The state after `char_id`; ValueError if that character was not allowed."""
        target = int(self._next[state, self._class_of[char_id]])
        if target < 0 or self._distance[target] == FAR:
            raise ValueError(f"character id {char_id} is not allowed in state {state} of {self.pattern!r}")
        return target

    def accepting(self, state: int) -> bool:
        """Whether the text so far fully matches the pattern."""
        return bool(self._distance[state] == 0)

    def distance(self, state: int) -> int:
        """Fewest characters from `state` to a full match (0 if accepting)."""
        return int(self._distance[state])

    def _build_rows(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """This state's `allowed` and `finishing` rows over the vocabulary, cached as read-only."""
        targets = self._next[state][self._class_of]
        reached = self._distance[np.maximum(targets, 0)]
        allowed = (targets >= 0) & (reached != FAR)
        finishing = allowed & (reached < self._distance[state])
        allowed.flags.writeable = False
        finishing.flags.writeable = False
        self._allowed[state], self._finishing[state] = allowed, finishing
        return allowed, finishing


def choice_pattern(choices: Sequence[str]) -> str:
    """A regex that fully matches exactly one of `choices` (each taken literally), for guided_choice."""
    if not choices:
        raise ConfigError("guided_choice is an empty list: give at least one string to choose from")
    return "(?:" + "|".join(re.escape(choice) for choice in choices) + ")"


def _distances_to(finals: list[int], predecessors: list[set[int]]) -> np.ndarray:
    """Fewest characters from each state to one of `finals` (FAR if none): a reverse breadth-first search."""
    distances = np.full(len(predecessors), FAR, dtype=np.int32)
    distances[finals] = 0
    queue = deque(finals)
    while queue:
        state = queue.popleft()
        for previous in predecessors[state]:
            if distances[previous] == FAR:
                distances[previous] = distances[state] + 1
                queue.append(previous)
    return distances


def _symbol_class(alphabet: Any, char: str, classes: int) -> int:
    """The DFA's symbol class of a vocab char (`anything_else` if the pattern never names it); `classes` if none."""
    symbol = alphabet[char]  # None in an alphabet without anything_else: the char leads nowhere
    return classes if symbol is None else int(symbol)


def _dfa(pattern: str, chars: Sequence[str], where: str) -> Any:
    """interegular's DFA for `pattern`, its syntax first checked by `re` and rewritten for interegular."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{where} {pattern!r} is not a valid regular expression: {error}") from None
    except (OverflowError, RecursionError):
        raise _too_complex(pattern, where) from None
    translated = _translate(pattern, chars, where)
    try:
        with _state_budget(MAX_STATES):
            return interegular.parse_pattern(translated).to_fsm()
    except _TooManyStates:
        raise _too_complex(pattern, where) from None
    except RecursionError:
        raise _too_complex(pattern, where) from None
    except interegular.Unsupported as error:
        raise ConfigError(
            f"{where} {pattern!r} uses something constrained sampling does not support: {error}"
        ) from None
    except Exception as error:  # interegular's parser fails in many ways on syntax it does not know
        raise ConfigError(
            f"{where} {pattern!r} uses syntax constrained sampling does not support ({type(error).__name__}: {error})"
        ) from None


_CLASS_ESCAPES = "dDwWsS"
_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")
_QUANTIFIER = re.compile(r"\{(\d*)(,\d*)?\}")


def _translate(pattern: str, chars: Sequence[str], where: str) -> str:
    """`pattern` (valid for `re`) in the subset of syntax interegular reads the same way.

    Class escapes become the vocab chars `re` says they match; `\\u`, `\\U`, `\\N{...}` and octal escapes
    become literal chars; end anchors are dropped; what a DFA cannot follow is rejected here, by name.
    """
    unsupported = f"{where} {pattern!r} uses {{}}, which constrained sampling cannot follow (it needs a plain regex)"
    out: list[str] = []
    in_class = class_start = False
    i, end = 0, len(pattern)
    while i < end:
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1]
            size = 2
            if e in _CLASS_ESCAPES:
                members = [ch for ch in chars if re.fullmatch("\\" + e, ch)]
                inner = "".join(map(_literal, members)) or _literal(_absent(chars))
                out.append(inner if in_class else f"[{inner}]")
            elif e in "uU":
                size += 4 if e == "u" else 8
                out.append(_literal(chr(int(pattern[i + 2 : i + size], 16))))
            elif e == "N":
                close = pattern.index("}", i)
                out.append(_literal(unicodedata.lookup(pattern[i + 3 : close])))
                size = close + 1 - i
            elif e.isdigit():
                digits = re.match(r"[0-7]{1,3}", pattern[i + 1 : i + 4])
                if e == "0" or in_class or (digits and len(digits.group()) == 3):
                    octal = re.match(r"0[0-7]{0,2}|[0-7]{1,3}", pattern[i + 1 : i + 4])
                    assert octal is not None  # re.compile accepted the pattern
                    out.append(_literal(chr(int(octal.group(), 8))))
                    size = 1 + len(octal.group())
                else:
                    raise ConfigError(unsupported.format("a backreference"))
            elif e in "AZ" and not in_class and (i == 0 if e == "A" else i + 2 == end):
                pass  # redundant: a constraint is always a full match
            elif e in "AZbB" and not in_class:
                raise ConfigError(unsupported.format("an anchor or word boundary inside the pattern"))
            elif e.isascii() and e.isalnum():
                out.append(pattern[i : i + 2])  # \n, \t, \x41: interegular reads these as re does
            else:
                out.append(_literal(e))  # an escaped punctuation mark, space or non-ASCII char
            i += size
            class_start = False
            continue
        if in_class:
            if c == "]" and not class_start:
                in_class = False
                out.append(c)
            elif c == "^" and class_start and pattern[i - 1] == "[":
                out.append(c)
                i += 1
                continue  # a `]` right after `[^` is still a literal
            elif c in "[]":
                out.append(_literal(c))  # interegular reads a leading `]` as the class's end
            else:
                out.append(c)
            class_start = False
        elif c == "[":
            in_class = class_start = True
            out.append(c)
        elif pattern.startswith(_LOOKAROUNDS, i):
            raise ConfigError(unsupported.format("a lookaround"))
        elif pattern.startswith("(?P=", i):
            raise ConfigError(unsupported.format("a backreference"))
        elif pattern.startswith("(?(", i):
            raise ConfigError(unsupported.format("a conditional group"))
        elif pattern.startswith("(?#", i):
            i = pattern.index(")", i) + 1  # a comment
            continue
        elif c in "^$":
            if not ((c == "^" and i == 0) or (c == "$" and i == end - 1)):
                raise ConfigError(
                    unsupported.format(f"{c!r} inside the pattern (anchors are allowed only at its ends)")
                )
        elif c == "{" and not ((m := _QUANTIFIER.match(pattern, i)) and m.group() != "{}"):
            out.append(_literal(c))  # re reads a brace that starts no quantifier as a literal
        elif pattern.startswith("{,}", i):
            out.append("{0,}")  # re reads {,} as *; interegular does not read it
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _literal(char: str) -> str:
    """`char` as a literal for interegular, in or out of a class: ASCII punctuation as a \\x escape."""
    if not char.isascii() or char.isalnum() or char == "_":
        return char
    return f"\\x{ord(char):02x}"


def _absent(chars: Sequence[str]) -> str:
    """A character the vocabulary lacks: stands for an empty set (the branch can never be taken)."""
    return next(c for c in map(chr, range(0xE000, 0x110000)) if c not in chars)


def _no_match(pattern: str, chars: Sequence[str], where: str, alphabet: Any) -> str:
    """Why nothing matches: the characters the pattern names that the model does not know, if any."""
    vocab = set(chars)
    vocab.add(_absent(chars))  # the stand-in for an empty class escape is no missing character
    named = sorted(c for c in getattr(alphabet, "_symbol_mapping", {}) if isinstance(c, str) and c not in vocab)
    why = f"the model has no {describe_chars(named)}" if named else "the model's characters cannot complete it"
    return f"no text made of the model's characters matches {where} {pattern!r}; {why}"


def _too_complex(pattern: str, where: str) -> ConfigError:
    return ConfigError(
        f"{where} {pattern!r} is too complex: its automaton has over {MAX_STATES:,} states (use smaller repeat counts)"
    )


class _TooManyStates(Exception):
    """An interegular construction step went past the state budget."""


_budget = threading.local()
_crawl: Callable[..., Any] = interegular.fsm.crawl


def _bounded_crawl(alphabet: Any, initial: Any, final: Any, follow: Any) -> Any:
    """interegular's `crawl` (which builds every DFA it makes), with a state budget and hashed lookups.

    The original finds each new state with `list.index`, quadratic in the states (9 s for 16k), and
    has no bound, so an exponential pattern such as `(a|b)*a(a|b){20}` would never return. Outside
    `_state_budget` (another user of interegular in this process) it is the original, unchanged.
    """
    limit = getattr(_budget, "limit", None)
    if limit is None:
        return _crawl(alphabet, initial, final, follow)
    states = [initial]
    index = {_key(initial): 0}
    finals = set()
    transitions: dict[int, dict[Any, int]] = {}
    for i, state in enumerate(states):  # grows while iterating
        if final(state):
            finals.add(i)
        transitions[i] = {}
        for symbol in alphabet.by_transition:
            try:
                target = follow(state, symbol)
            except interegular.fsm.OblivionError:
                continue
            key = _key(target)
            if key not in index:
                if len(states) >= limit:
                    raise _TooManyStates
                index[key] = len(states)
                states.append(target)
            transitions[i][symbol] = index[key]
    return interegular.fsm.FSM(
        alphabet=alphabet, states=range(len(states)), initial=0, finals=finals, map=transitions, __no_validation__=True
    )


def _key(state: Any) -> Any:
    """A hashable stand-in for an interegular crawl state (`parallel` uses dicts, `concatenate` sets)."""
    if isinstance(state, dict):
        return frozenset(state.items())
    return frozenset(state) if isinstance(state, set) else state


@contextmanager
def _state_budget(limit: int) -> Iterator[None]:
    """Within this block (on this thread), interegular DFAs have at most `limit` states each."""
    _budget.limit = limit
    try:
        yield
    finally:
        _budget.limit = None


interegular.fsm.crawl = _bounded_crawl
