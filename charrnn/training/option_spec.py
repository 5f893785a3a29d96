"""The mechanism behind the option declarations (training.options): what one declaration holds
(`Spec`, made by `option()` beside its dataclass field) and how a value is parsed and checked
against it. The declarations themselves, and what reads them, are in training.options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from charrnn.bounds import check_bounds
from charrnn.choices import Choice
from charrnn.durations import Interval, parse_duration
from charrnn.errors import ConfigError
from charrnn.store.schema import is_text

MODEL, OPTIM, BUDGET, CKPTS, SYSTEM = "Model", "Optimisation", "Budget", "Checkpoints", "System"
PANELS = (MODEL, OPTIM, BUDGET, CKPTS, SYSTEM)  # `--help`'s panels, in order


class Role(Enum):
    """What `--resume` does with an option."""

    IDENTITY = "identity"  # defines the run: a different value is refused
    ADJUSTABLE = "adjustable"  # may change; the change is reported as a warning
    RUN = "run"  # says which run, not how it trains (corpus, out, resume, init_from)


class Record(Enum):
    """Where a run keeps the value an option resolved to, besides the record of its options."""

    OPTIONS = "options"  # only there (how to run, not what: device, threads, ...)
    MODEL = "model"  # a `ModelConfig` field of the same name
    SCHEDULE = "schedule"  # a `TrainConfig` field (named `stored_as` where that differs)


class Unset(Enum):
    """The `predates` of an option every recorded run has: no value to fill in."""

    UNSET = "unset"


UNSET = Unset.UNSET


class Kind(Enum):
    INT = "int"
    FLOAT = "float"
    TEXT = "text"
    DURATION = "duration"  # seconds, written 90s, 10m, 1h30m
    INTERVAL = "interval"  # N steps or a DURATION
    CHOICE = "choice"


@dataclass(frozen=True)
class Spec:
    """The declaration of one option, beside its dataclass field (which holds type and default)."""

    help: str
    panel: str
    role: Role
    kind: Kind
    flag: str = ""  # without the dashes; default: the field name with - for _
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False  # strictly above zero (and finite)
    planned: str = ""  # shown as the default where None means "chosen for this corpus and budget"
    metavar: str | None = None
    choices: type[Choice] | None = None
    record: Record = Record.OPTIONS
    stored_as: str = ""  # the `TrainConfig` field, where it is not the option's name
    # The value a run recorded before this option existed ran with (not today's default: a resumed
    # old run must go on doing what it did).
    predates: Any = UNSET


def option(default: Any, help: str, panel: str, role: Role, kind: Kind, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, panel, role, kind, **spec)})


def parse_declared(spec: Spec, where: str, value: Any) -> Any:
    """A value (not None) converted to what `spec` declares and checked against its range; ConfigError
    naming `where` (the flag) if not."""
    if spec.kind is Kind.CHOICE:
        assert spec.choices is not None
        return spec.choices.parse(value, where)
    if spec.kind is Kind.DURATION:
        seconds = parse_number(value, where, float) if not isinstance(value, str) else duration(value, where)
        return check_range(spec, where, seconds)
    if spec.kind is Kind.INTERVAL:
        return interval(value, where)
    if spec.kind is Kind.TEXT:
        if not isinstance(value, str):
            raise ConfigError(f"{where} takes text, got {value!r}")
        if not is_text(value):  # bytes that are not UTF-8, as argv carries them: no run could record them
            raise ConfigError(f"{where} {ascii(value)[:40]} is not valid UTF-8; use a UTF-8 name or text")
        return value
    number = parse_number(value, where, int if spec.kind is Kind.INT else float)
    return check_range(spec, where, number)


def parse_number(value: Any, where: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where} takes a number, got {value!r}")
    try:
        number = kind(value) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"{where} takes {'a whole number' if kind is int else 'a number'}, got {value!r}") from None
    if kind is int and (isinstance(number, float) or not isinstance(number, int)):
        if not (isinstance(number, float) and number.is_integer()):
            raise ConfigError(f"{where} takes a whole number, got {value!r}")
        number = int(number)
    return float(number) if kind is float else number


def check_range(spec: Spec, where: str, number: float) -> Any:
    return check_bounds(where, number, spec.minimum, spec.maximum, positive=spec.positive)


def duration(text: str, where: str) -> float:
    try:
        seconds = parse_duration(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not seconds < math.inf:
        raise ConfigError(f"{where} must be finite, got {text}")
    return seconds


def interval(value: Any, where: str) -> Interval:
    """`500` (an int or its text) is steps; a duration (`5m`, or seconds as a float) is wall time."""
    if isinstance(value, Interval):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where} takes N steps or a duration, got {value!r}")
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):
        value = f"{value!r}s"
    try:
        parsed = Interval.parse(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if parsed.seconds is not None and not parsed.seconds < math.inf:
        raise ConfigError(f"{where} must be finite, got {value}")
    return parsed
