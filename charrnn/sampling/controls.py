"""Every generation control, declared once: type and default (the dataclass field), range, help,
CLI flag, API field, and whether it needs the whole batch.

`charrnn sample`'s flags, `charrnn serve`'s request fields and their error messages, the Python
API's keywords (`Model.generate`), the REPL's `:set` and the table in docs/sampling.md are all
derived from these declarations (tests/test_controls.py checks the docs table against them).
Adding a control is one `control(...)` here plus its arithmetic (charrnn.sampling.pick for a
change to the logits, charrnn.sampling.engine for state a row carries).

Two dataclasses hold the values: `SampleSettings`, how each next character is picked (rows with
equal settings are picked together), and `RunSettings`, how many samples of what length.
Values are checked here, with the name the user typed (`--min-p` or `min_p`) in the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from charrnn.bounds import check_bounds
from charrnn.errors import ConfigError

SAMPLING, PENALTIES, CONSTRAINTS, SAMPLES, SEARCH = "Sampling", "Penalties", "Constraints", "Samples", "Search"
MAX_SEED = 2**64 - 1
MAX_BIAS = 100.0  # OpenAI's range for logit_bias; -100 (or below) bans the character


class Kind(Enum):
    INT = "int"
    FLOAT = "float"
    TEXT = "text"  # any string
    REGEX = "regex"  # a pattern; compiled against the vocabulary when generation starts
    STOPS = "stops"  # a list of non-empty strings (CLI: repeatable)
    BIAS = "bias"  # CLI: CHAR=VALUE (repeatable); API: {"char or token id": value}
    BOOL = "bool"


@dataclass(frozen=True)
class Control:
    """The declaration of one control, beside its dataclass field."""

    help: str
    kind: Kind
    panel: str
    flag: str = ""  # CLI flag without dashes ("" when not on the CLI)
    api: str = ""  # request field of `charrnn serve` ("" when not served)
    aliases: tuple[str, ...] = ()  # more CLI spellings, with their dashes
    api_aliases: tuple[str, ...] = ()  # the same field as other servers name it
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    batch: bool = False  # needs every sample at once (not streamed one by one)
    metavar: str | None = None
    off: str = ""  # what the default means, for the docs table ("off", "no limit")


def control(default: Any, help: str, kind: Kind, panel: str, **spec: Any) -> Any:
    return field(default=default, metadata={"control": Control(help, kind, panel, **spec)})


@dataclass(frozen=True)
class SampleSettings:
    """How to pick each next character (see charrnn.sampling.pick for the order of the steps)."""

    temperature: float = control(
        1.0,
        "Temperature; 0 picks the likeliest character.",
        Kind.FLOAT,
        SAMPLING,
        flag="temp",
        api="temperature",
        aliases=("--temperature", "-t"),
        minimum=0.0,
        maximum=100.0,
    )
    top_k: int | None = control(
        None, "Sample only from the K likeliest characters.", Kind.INT, SAMPLING, flag="top-k", api="top_k",
        minimum=1, off="all",
    )  # fmt: skip
    top_p: float | None = control(
        None, "Sample from the smallest set with this much probability.", Kind.FLOAT, SAMPLING, flag="top-p",
        api="top_p", above=0.0, maximum=1.0, off="1 (all)",
    )  # fmt: skip
    min_p: float | None = control(
        None, "Drop characters less likely than P times the likeliest.", Kind.FLOAT, SAMPLING, flag="min-p",
        api="min_p", minimum=0.0, maximum=1.0, metavar="P", off="off",
    )  # fmt: skip
    repetition_penalty: float = control(
        1.0, "Divide the logit (multiply a negative one) of each character seen in the window by this.",
        Kind.FLOAT, PENALTIES, flag="repetition-penalty", api="repetition_penalty", api_aliases=("repeat_penalty",),
        above=0.0, maximum=10.0, off="1 (off)",
    )  # fmt: skip
    penalty_window: int = control(
        64, "Characters (prime included) the penalties look back over.", Kind.INT, PENALTIES,
        flag="penalty-window", api="penalty_window", api_aliases=("repeat_last_n",), minimum=1, maximum=1_000_000,
    )  # fmt: skip
    presence_penalty: float = control(
        0.0, "Subtract this from the logit of each character seen in the window.", Kind.FLOAT, PENALTIES,
        flag="presence-penalty", api="presence_penalty", minimum=-2.0, maximum=2.0, off="0 (off)",
    )  # fmt: skip
    frequency_penalty: float = control(
        0.0, "Subtract this times its count in the window from each character's logit.", Kind.FLOAT, PENALTIES,
        flag="frequency-penalty", api="frequency_penalty", minimum=-2.0, maximum=2.0, off="0 (off)",
    )  # fmt: skip
    no_repeat_ngram: int = control(
        0, "Never repeat a run of N characters already in the text (prime included).", Kind.INT, PENALTIES,
        flag="no-repeat-ngram", api="no_repeat_ngram_size", minimum=0, maximum=4096, metavar="N", off="0 (off)",
    )  # fmt: skip
    ban: str = control(
        "", "Never produce any of these characters.", Kind.TEXT, CONSTRAINTS, flag="ban", api="ban",
        metavar="CHARS", off="none",
    )  # fmt: skip
    bias: tuple[tuple[str | int, float], ...] = control(
        (), "Add VALUE to a character's logit (repeatable); -100 bans it. API: a character or token id as key.",
        Kind.BIAS, CONSTRAINTS, flag="bias", api="logit_bias", metavar="CHAR=VALUE", off="none",
    )  # fmt: skip
    match: str | None = control(
        None, "Every sample fully matches this regex (Python syntax).", Kind.REGEX, CONSTRAINTS, flag="match",
        api="guided_regex", metavar="REGEX", off="none",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_values(self, "flag")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalised(self) -> bool:
        """Whether rows must count the characters in their window."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


@dataclass(frozen=True)
class RunSettings:
    """How many samples, of what length, from which seeds, searched how."""

    length: int = control(
        1000, "Characters to generate per sample (the prime not counted).", Kind.INT, SAMPLES, flag="length",
        api="max_tokens", aliases=("-l",), minimum=0,
    )  # fmt: skip
    num_samples: int = control(
        1, "Independent samples, computed together.", Kind.INT, SAMPLES, flag="num-samples", api="n",
        aliases=("-n",), minimum=1,
    )  # fmt: skip
    seed: int | None = control(
        None, "Random seed: the same seed gives the same text; sample i uses seed+i.", Kind.INT, SAMPLES,
        flag="seed", api="seed", minimum=0, maximum=MAX_SEED, off="random",
    )  # fmt: skip
    stop: tuple[str, ...] = control(
        (), "End a sample when it produces STR (repeatable).", Kind.STOPS, SAMPLES, flag="stop", api="stop",
        metavar="STR", off="none",
    )  # fmt: skip
    keep_stop: bool = control(
        True, "Keep the stop string at the end of the sample.", Kind.BOOL, SAMPLES, flag="keep-stop",
    )  # fmt: skip
    best_of: int | None = control(
        None, "Draw this many samples and keep the -n with the highest log probability per character.", Kind.INT,
        SEARCH, flag="best-of", api="best_of", minimum=1, batch=True, metavar="M", off="-n",
    )  # fmt: skip
    beam: int = control(
        0, "Beam search with K beams (deterministic); -n <= K best are returned.", Kind.INT, SEARCH, flag="beam",
        minimum=0, maximum=256, batch=True, metavar="K", off="0 (sampling)",
    )  # fmt: skip
    length_norm: float = control(
        0.0, "Beam search ranks by log probability / length^A (0: total log probability).", Kind.FLOAT, SEARCH,
        flag="length-norm", minimum=0.0, maximum=4.0, metavar="A",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_values(self, "flag")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("--stop takes non-empty strings")
        if self.best_of is not None and self.best_of < self.num_samples:
            raise ConfigError(f"--best-of ({self.best_of}) must be at least --num-samples ({self.num_samples})")
        if self.beam and self.num_samples > self.beam:
            raise ConfigError(f"--num-samples ({self.num_samples}) must be at most --beam ({self.beam})")
        if self.beam and self.best_of is not None:
            raise ConfigError("--best-of draws samples; --beam searches: give one of them")
        if self.seed is not None and self.seed > MAX_SEED - (self.draws - 1):
            raise ConfigError(f"--seed must be between 0 and {MAX_SEED - (self.draws - 1)}, got {self.seed}")

    @property
    def draws(self) -> int:
        """Samples generated: best_of when ranking, else num_samples."""
        return self.best_of or self.num_samples


def controls(owner: type) -> dict[str, Control]:
    return {f.name: f.metadata["control"] for f in fields(owner) if "control" in f.metadata}


SAMPLE_CONTROLS = controls(SampleSettings)
RUN_CONTROLS = controls(RunSettings)
CONTROLS = {**SAMPLE_CONTROLS, **RUN_CONTROLS}
DEFAULTS: dict[str, Any] = {f.name: f.default for cls in (SampleSettings, RunSettings) for f in fields(cls)}


def flag_of(name: str) -> str:
    return "--" + CONTROLS[name].flag


def named(name: str, style: str) -> str:
    """How the user wrote this control: `--min-p` (flag), `min_p` (api) or `min_p=` (python keyword)."""
    spec = CONTROLS[name]
    if style == "api":
        return f"`{spec.api or name}`"
    if style == "python":
        return f"{name}="
    return "--" + spec.flag if spec.flag else name


def check_values(settings: Any, style: str) -> None:
    """Each numeric field against its declared range (NaN fails every comparison)."""
    for f in fields(settings):
        spec = f.metadata.get("control")
        value = getattr(settings, f.name)
        if spec is None or value is None or spec.kind not in (Kind.INT, Kind.FLOAT):
            continue
        check_number(spec, value, named(f.name, style))


def check_number(spec: Control, value: float, where: str) -> None:
    check_bounds(where, value, spec.minimum, spec.maximum, spec.above)


def parse_value(name: str, value: Any, style: str) -> Any:
    """`value` (from argv, JSON or a Python call) as the declared type of control `name`; ConfigError if not."""
    spec = CONTROLS[name]
    where = named(name, style)
    if value is None:
        return None
    kind = spec.kind
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if kind in (Kind.INT, Kind.FLOAT):
        if isinstance(value, str) and style != "flag":  # JSON and Python callers send numbers as numbers
            raise ConfigError(f"{where} must be a {'whole ' if kind is Kind.INT else ''}number, got {value!r}")
        number = to_number(value, where, kind is Kind.INT)
        check_number(spec, number, where)
        return number
    if kind in (Kind.TEXT, Kind.REGEX):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        if kind is Kind.REGEX:
            try:
                re.compile(value)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ConfigError(f"{where}: not a valid regex: {exc}") from None
        return value
    if kind is Kind.STOPS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(s, str) and s for s in items):
            raise ConfigError(f"{where} takes non-empty strings")
        return tuple(items)
    return parse_bias(value, where, style)


def to_number(value: Any, where: str, whole: bool) -> Any:
    if isinstance(value, str):
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            raise ConfigError(f"{where} must be {'a whole number' if whole else 'a number'}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a {'whole ' if whole else ''}number")
    if whole:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where} must be a whole number, got {value}")
            value = int(value)
        return value
    return float(value)


def parse_bias(value: Any, where: str, style: str) -> tuple[tuple[str | int, float], ...]:
    """CLI: ["e=2", "x=-100"]; API: {"e": 2, "120": -100} (a key of digits is a token id, as OpenAI
    clients send them; any other key must be one character)."""
    pairs: list[tuple[str | int, float]] = []
    if isinstance(value, dict):
        for key, amount in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{where} keys are characters or token ids")
            target: str | int = int(key) if key.isascii() and key.isdigit() else key
            if isinstance(target, str) and len(target) != 1:
                raise ConfigError(f"{where} key {key!r} is neither one character nor a token id")
            pairs.append((target, bias_amount(amount, where)))
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, tuple) and len(item) == 2:
                pairs.append((item[0], bias_amount(item[1], where)))
                continue
            if not isinstance(item, str) or len(item) < 3 or item[1] != "=":
                raise ConfigError(f"{where} takes CHAR=VALUE (one character), got {item!r}")
            pairs.append((item[0], bias_amount(item[2:], where)))
    else:
        raise ConfigError(f"{where} must be an object of character (or token id) -> number")
    return tuple(sorted(dict(pairs).items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0]))))


def bias_amount(value: Any, where: str) -> float:
    amount = to_number(value, where, whole=False)
    if not -MAX_BIAS <= amount <= MAX_BIAS:
        raise ConfigError(f"{where} values must be between {-MAX_BIAS:g} and {MAX_BIAS:g}, got {amount}")
    return float(amount)


def build(values: dict[str, Any], style: str) -> tuple[SampleSettings, RunSettings]:
    """Both settings from {control name: value} (missing names keep their defaults), each value
    parsed and checked with the user's own name for it in any message."""
    unknown = [name for name in values if name not in CONTROLS]
    if unknown:
        raise ConfigError(f"unknown generation control {unknown[0]!r}")
    parsed = {name: parse_value(name, value, style) for name, value in values.items() if value is not None}
    sample = {k: v for k, v in parsed.items() if k in SAMPLE_CONTROLS}
    run = {k: v for k, v in parsed.items() if k in RUN_CONTROLS}
    try:
        return SampleSettings(**sample), RunSettings(**run)
    except ConfigError as exc:
        if style == "flag":
            raise
        raise ConfigError(restyle(str(exc), style)) from None


def restyle(message: str, style: str) -> str:
    """A message naming flags, with each flag replaced by the name the user wrote (`--min-p` -> `min_p`)."""
    for name, spec in sorted(CONTROLS.items(), key=lambda kv: -len(kv[1].flag)):
        if spec.flag:
            message = re.sub(rf"--{re.escape(spec.flag)}\b", named(name, style), message)
    return message


def docs_table() -> str:
    """The Markdown table in docs/sampling.md (a test checks the file against this)."""
    lines = ["| flag | API field | default | range | what it does |", "|---|---|---|---|---|"]
    for name, spec in CONTROLS.items():
        default = DEFAULTS[name]
        shown = spec.off or ("" if default in (None, (), "") else str(default).lower())
        api = ", ".join(f"`{a}`" for a in (spec.api, *spec.api_aliases) if a) or "-"
        flag = f"`--{spec.flag}`" if spec.flag else "-"
        lines.append(f"| {flag} | {api} | {shown} | {value_range(spec)} | {spec.help} |")
    return "\n".join(lines) + "\n"


def value_range(spec: Control) -> str:
    def shown(x: float) -> str:
        return "2^64-1" if x == MAX_SEED else (str(int(x)) if float(x).is_integer() else f"{x:g}")

    if spec.above is not None:
        return f"({shown(spec.above)}, {shown(spec.maximum)}]" if spec.maximum is not None else f"> {shown(spec.above)}"
    if spec.minimum is not None and spec.maximum is not None:
        return f"[{shown(spec.minimum)}, {shown(spec.maximum)}]"
    if spec.minimum is not None:
        return f">= {shown(spec.minimum)}"
    return ""
