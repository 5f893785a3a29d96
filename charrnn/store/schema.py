"""A small declarative schema for JSON records: each field's type and range, checked in one pass.

A checkpoint's metadata is JSON that anyone can forge (the digest proves integrity, not origin), so
every record in it is declared here with what its values may be, and `check` walks a value against
its declaration, naming the first violation by its path (`optimizer.param_groups[0]: expected an
object`). Declarations are plain functions that return the checked value, so they compose:

    ROW = record({"step": integer(0), "val_loss": optional(number())}, required=("step",))
    check(list_of(ROW), rows, "history")

No dependency: the few rules a checkpoint needs fit here, and `sample` starts without importing a
validation library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_INT = 2**53  # the largest integer a JSON reader elsewhere (JavaScript) still holds exactly


class SchemaError(ValueError):
    """The first value that breaks its declaration: `path` (e.g. `corpus.sources[2]`) and what was expected."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path}: {expected}")
        self.path = path
        self.expected = expected


Rule = Callable[[Any, str], Any]  # (value, path) -> the value, checked; SchemaError otherwise


def check(rule: Rule, value: Any, path: str) -> Any:
    return rule(value, path)


def shown(value: Any) -> str:
    """A short, printable rendering of a rejected value (it may be huge or hold control characters)."""
    return ascii(value)[:40]


def integer(low: int | None = None, high: int = MAX_INT) -> Rule:
    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(path, f"expected a whole number, got {shown(value)}")
        if (low is not None and value < low) or value > high:
            raise SchemaError(path, f"expected a whole number from {low} to {high}, got {shown(value)}")
        return value

    return rule


def number(low: float | None = None, high: float | None = None) -> Rule:
    """A finite JSON number (ints allowed), within [low, high] where given."""

    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise SchemaError(path, f"expected a finite number, got {shown(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise SchemaError(path, f"expected a number from {low} to {high}, got {shown(value)}")
        return value

    return rule


def boolean() -> Rule:
    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise SchemaError(path, f"expected true or false, got {shown(value)}")
        return value

    return rule


def text(max_len: int | None = None, pattern: str | None = None, nonempty: bool = False) -> Rule:
    """A string that is valid Unicode text (no lone surrogates: no file can hold them), at most
    `max_len` characters where the writer bounds it (free text, such as a command line, is bounded
    only by the header's own size limit)."""
    compiled = re.compile(pattern) if pattern else None

    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise SchemaError(path, f"expected a string, got {shown(value)}")
        if nonempty and not value:
            raise SchemaError(path, "expected a non-empty string")
        if max_len is not None and len(value) > max_len:
            raise SchemaError(path, f"expected a string of at most {max_len} characters, got {len(value)}")
        if not is_text(value):
            raise SchemaError(path, "expected text, got a lone surrogate (not a character)")
        if compiled is not None and not compiled.fullmatch(value):
            raise SchemaError(path, f"expected a string matching {pattern}, got {shown(value)}")
        return value

    return rule


def is_text(value: str) -> bool:
    """False where `value` holds a lone surrogate, which JSON's \\ud800 escapes can carry but no text can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def one_of(*choices: Any) -> Rule:
    def rule(value: Any, path: str) -> Any:
        if isinstance(value, bool) or value not in choices:
            raise SchemaError(path, f"expected one of {', '.join(map(repr, choices))}, got {shown(value)}")
        return value

    return rule


def optional(inner: Rule) -> Rule:
    """None, or what `inner` accepts."""

    def rule(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return rule


def either(*rules: Rule, expected: str) -> Rule:
    """The first of `rules` that accepts the value."""

    def rule(value: Any, path: str) -> Any:
        for inner in rules:
            try:
                return inner(value, path)
            except SchemaError:
                continue
        raise SchemaError(path, f"expected {expected}, got {shown(value)}")

    return rule


def list_of(item: Rule, max_len: int = MAX_INT, min_len: int = 0) -> Rule:
    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise SchemaError(path, f"expected a list, got {shown(value)}")
        if not min_len <= len(value) <= max_len:
            raise SchemaError(path, f"expected a list of {min_len} to {max_len} items, got {len(value)}")
        return [item(element, f"{path}[{index}]") for index, element in enumerate(value)]

    return rule


def record(fields: Mapping[str, Rule], required: Sequence[str] = (), others: Rule | None = None) -> Rule:
    """A JSON object: each declared field checked by its rule, `required` ones present; fields not
    declared are checked by `others` (a rule for their values), or refused where it is None."""

    def rule(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise SchemaError(path, f"expected an object, got {shown(value)}")
        for name in required:
            if name not in value:
                raise SchemaError(join(path, name), "missing")
        checked: dict[str, Any] = {}
        for name, field_value in value.items():
            inner = fields.get(name, others)
            if inner is None:
                raise SchemaError(join(path, str(name)), "not a field charrnn writes")
            checked[name] = inner(field_value, join(path, name))
        return checked

    return rule


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def anything(value: Any, path: str) -> Any:
    """Any JSON value (for a record another layer checks in full, such as the stored options)."""
    return value


def scalar() -> Rule:
    """A JSON scalar: a boolean, a finite number, a string, or null (an optimizer's flag or setting)."""
    return optional(either(boolean(), number(), text(), expected="a number, a string, true, false or null"))
