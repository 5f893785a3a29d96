"""Every training option, declared once: type and default (the dataclass field), flag, help, range,
help panel and what `--resume` may do with it (the field's `Spec`).

The CLI builds `charrnn train`'s flags from these declarations, the Python API (`charrnn.train`)
takes the same names and defaults, and the resume rules read each option's role, so a `--help`
default, an API default and a dataclass default cannot disagree. Values are parsed and checked
once, by `parse_options`; inside the library a duration is seconds, an interval an `Interval`,
a choice an Enum.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any

from charrnn.choices import Cell, Choice, DType, Errors
from charrnn.durations import Interval
from charrnn.errors import ConfigError
from charrnn.shared_options import (  # MAX_THREADS is also read from here (commands/sample.py)
    DEFAULT_DEVICE,
    DEVICE_CHOICES,
    DEVICE_DEFAULTS,
    DEVICE_METAVAR,
    MAX_THREADS,
    THREADS_HELP,
    Work,
)
from charrnn.training.option_spec import (
    BUDGET,
    CKPTS,
    MODEL,
    OPTIM,
    PANELS,
    SYSTEM,
    UNSET,
    Kind,
    Record,
    Role,
    Spec,
    option,
    parse_declared,
)
from charrnn.training.schedule_options import ScheduleOptions


@dataclass(frozen=True, kw_only=True)
class TrainOptions(ScheduleOptions):
    """What the user asked for. None means "choose a good value for this corpus and budget"."""

    corpus: tuple[str, ...]
    out: str | None = option(
        None, "Run directory.", CKPTS, Role.RUN, Kind.TEXT, planned="checkpoints/<corpus name>", metavar="DIR"
    )
    cell: Cell = option(
        Cell.LSTM, "Recurrent cell.", MODEL, Role.IDENTITY, Kind.CHOICE, choices=Cell, record=Record.MODEL
    )
    num_layers: int | None = option(
        None,
        "Stacked layers.",
        MODEL,
        Role.IDENTITY,
        Kind.INT,
        flag="layers",
        minimum=1,
        planned="2",
        record=Record.MODEL,
    )
    hidden_size: int | None = option(
        None,
        "Hidden units per layer.",
        MODEL,
        Role.IDENTITY,
        Kind.INT,
        flag="hidden",
        minimum=1,
        planned="by corpus size and budget",
        record=Record.MODEL,
    )
    embed_size: int | None = option(
        None,
        "Character embedding size.",
        MODEL,
        Role.IDENTITY,
        Kind.INT,
        flag="embed",
        minimum=1,
        planned="64",
        record=Record.MODEL,
    )
    dropout: float | None = option(
        None,
        "Dropout between layers.",
        MODEL,
        Role.IDENTITY,
        Kind.FLOAT,
        minimum=0.0,
        maximum=0.95,
        planned="by expected epochs; 0.5 in a 12-pass plan",
        metavar="P",
        record=Record.MODEL,
    )
    batch_size: int | None = option(
        None,
        "Parallel streams per step.",
        OPTIM,
        Role.IDENTITY,
        Kind.INT,
        minimum=1,
        planned="32 on CPU; 128 to 512 on a GPU, by the updates the budget buys",
        record=Record.SCHEDULE,
    )
    seq_len: int | None = option(
        None,
        "Characters per window (BPTT length).",
        OPTIM,
        Role.IDENTITY,
        Kind.INT,
        minimum=1,
        planned="64 on CPU, 128 on a GPU",
        record=Record.SCHEDULE,
    )
    stream_groups: int | None = option(
        None,
        "Cut the text into this many groups of batch streams, read in turn: each step learns from text "
        "far from the last step's, and every stream keeps its own carried state.",
        OPTIM,
        Role.IDENTITY,
        Kind.INT,
        minimum=1,
        planned="16, fewer for a short text",
        metavar="G",
        record=Record.SCHEDULE,
        predates=1,
    )
    lr: float | None = option(
        None,
        "Peak learning rate.",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.FLOAT,
        positive=True,
        planned="0.01 x sqrt(384/hidden); x2 up to 300 steps, back to x1 by 500; at most 0.02",
        metavar="LR",
        record=Record.SCHEDULE,
    )
    weight_decay: float | None = option(
        None,
        "AdamW weight decay.",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.FLOAT,
        minimum=0.0,
        planned="0.01; 0.2 where the budget buys many passes",
        record=Record.SCHEDULE,
    )
    warmup_steps: int | None = option(
        None,
        "Steps of linear learning-rate warmup.",
        OPTIM,
        Role.ADJUSTABLE,
        Kind.INT,
        minimum=0,
        planned="20, or a tenth of --steps if that is less",
        record=Record.SCHEDULE,
    )
    time: float | None = option(
        None,
        "Wall-clock budget, final validation included: 90s, 10m, 1h30m.",
        BUDGET,
        Role.ADJUSTABLE,
        Kind.DURATION,
        positive=True,
        planned="10m if no budget",
        metavar="DURATION",
        record=Record.SCHEDULE,
        stored_as="time_s",
    )
    epochs: float | None = option(
        None,
        "Stop after this many passes over the text.",
        BUDGET,
        Role.ADJUSTABLE,
        Kind.FLOAT,
        positive=True,
        planned="none; 12 where the time buys many more",
        record=Record.SCHEDULE,
    )
    eval_every: Interval | None = option(
        None,
        "Validate every N steps or every DURATION.",
        BUDGET,
        Role.ADJUSTABLE,
        Kind.INTERVAL,
        planned="1/4 of the budget, costing at most ~5% of it",
        metavar="N|DURATION",
        record=Record.SCHEDULE,
    )
    resume: str | None = option(
        None,
        "Continue a run exactly where it stopped; corpus, model and budget come from the run.",
        CKPTS,
        Role.RUN,
        Kind.TEXT,
        metavar="RUN_DIR|CKPT",
    )
    init_from: str | None = option(
        None,
        "Fine-tune: start a new run from this checkpoint's weights (its vocab must cover the corpus).",
        CKPTS,
        Role.RUN,
        Kind.TEXT,
        metavar="CKPT",
    )
    device: str = option(  # help and default: the rule every command shares (shared_options)
        DEFAULT_DEVICE[Work.THROUGHPUT],
        DEVICE_CHOICES,
        SYSTEM,
        Role.ADJUSTABLE,
        Kind.TEXT,
        planned=DEVICE_DEFAULTS,
        metavar=DEVICE_METAVAR,
    )
    dtype: DType = option(
        DType.AUTO,
        "Compute dtype: auto is bf16 where the hardware has it natively, unless fp32 trains faster "
        "in the start-up probe (a time budget).",
        SYSTEM,
        Role.ADJUSTABLE,
        Kind.CHOICE,
        choices=DType,
    )
    threads: int | None = option(
        None,
        THREADS_HELP,
        SYSTEM,
        Role.ADJUSTABLE,
        Kind.INT,
        minimum=1,
        maximum=MAX_THREADS,
        planned="usable cores",
    )
    errors: Errors = option(
        Errors.STRICT, "Invalid UTF-8 in the corpus.", SYSTEM, Role.IDENTITY, Kind.CHOICE, choices=Errors
    )
    doc_separator: str = option(
        "\n\n",
        "Text put between the files of a multi-file corpus, e.g. $'\\n<|end|>\\n'.",
        SYSTEM,
        Role.IDENTITY,
        Kind.TEXT,
        planned="a blank line",
    )
    max_bad_steps: int = option(
        5,
        "NaN/inf steps in a row before rolling back to the last checkpoint.",
        SYSTEM,
        Role.ADJUSTABLE,
        Kind.INT,
        minimum=1,
    )
    max_save_failures: int = option(
        3, "Failed checkpoint writes in a row before training gives up.", SYSTEM, Role.ADJUSTABLE, Kind.INT, minimum=1
    )
    command: str = ""  # the command line (or API call) that started the run, for the record
    # The options this invocation set by name, even to their default value: `--resume` can then tell
    # `--decay linear` (switch an older run to it) from no flag at all. Not part of the run's record.
    chosen: tuple[str, ...] = field(default=(), metadata={"recorded": False})

    def __post_init__(self) -> None:
        """A choice given as its plain string (`TrainOptions(cell="gru")`) becomes its Enum member."""
        for name, spec in SPECS.items():
            value = getattr(self, name)
            if spec.choices is not None and not isinstance(value, spec.choices):
                object.__setattr__(self, name, spec.choices.parse(value, flag(name)))

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (a duration in seconds, an interval as `500` or `5m`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.metadata.get("recorded", True):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value_text(value)
        return out


def value_text(value: Any) -> Any:
    """A parsed value back in the form a user writes (and `parse_value` reads)."""
    if isinstance(value, Interval):
        return value.spec
    if isinstance(value, Choice):
        return value.value
    return value


def declared() -> list[tuple[Field[Any], Spec]]:
    """The options with a declaration, in the order of `--help`: by panel, and in each panel the
    ones the plan may choose before those the schedule takes as given (`ScheduleOptions`)."""
    given = {f.name for f in fields(ScheduleOptions)}
    specs = [(f, f.metadata["spec"]) for f in fields(TrainOptions) if "spec" in f.metadata]
    return sorted(specs, key=lambda item: (PANELS.index(item[1].panel), item[0].name in given))


SPECS: dict[str, Spec] = {f.name: spec for f, spec in declared()}
FLAGS: dict[str, str] = {name: spec.flag or name for name, spec in SPECS.items()}  # field -> flag, with `_`
FIELDS_BY_FLAG: dict[str, str] = {flag: name for name, flag in FLAGS.items()}


def recorded_in(record: Record) -> tuple[str, ...]:
    """The options whose resolved value a run keeps in `record` (its model or its schedule)."""
    return tuple(name for name, spec in SPECS.items() if spec.record is record)


MODEL_FIELDS = recorded_in(Record.MODEL)  # options that are ModelConfig fields
SCHEDULE_KEYS: dict[str, str] = {name: SPECS[name].stored_as or name for name in recorded_in(Record.SCHEDULE)}
# What a run recorded before an option existed ran with, by option (its declaration's `predates`).
PREDATES: dict[str, Any] = {name: spec.predates for name, spec in SPECS.items() if spec.predates is not UNSET}


def flag(name: str) -> str:
    """The command-line flag of a field: `hidden_size` -> `--hidden`."""
    return "--" + FLAGS.get(name, name).replace("_", "-")


def default_of(name: str) -> Any:
    return next(f.default for f in fields(TrainOptions) if f.name == name)


def field_name(name: str) -> str | None:
    """The field a flag name (`hidden`) or a field name (`hidden_size`) refers to; None if neither."""
    if name in SPECS:
        return name
    return FIELDS_BY_FLAG.get(name)


def parse_value(name: str, value: Any) -> Any:
    """One option's value, converted to its type and checked against its range (ConfigError if not)."""
    if value is None:
        if default_of(name) is not None:
            raise ConfigError(f"{flag(name)} needs a value")
        return None
    return parse_declared(SPECS[name], flag(name), value)


def parse_options(
    corpus: tuple[str, ...] | list[str], command: str = "", chosen: tuple[str, ...] | None = None, **values: Any
) -> TrainOptions:
    """TrainOptions from values as a user gives them (text or numbers), keyed by field name.

    Every value is converted and checked here, once; options left out keep their declared default.
    `chosen` names the values the user set (default: all of them, as an API call passes only those;
    the command line passes every flag, so it names the ones typed).
    """
    unknown = [name for name in values if name not in SPECS]
    if unknown:
        raise ConfigError(f"unknown training option {unknown[0]!r}")
    parsed = {name: parse_value(name, value) for name, value in values.items()}
    if parsed.get("resume") is not None and parsed.get("init_from") is not None:
        raise ConfigError("--resume continues a run and --init-from starts a new one; pass only one")
    chosen = tuple(values) if chosen is None else tuple(name for name in chosen if name in SPECS)
    return TrainOptions(corpus=tuple(str(source) for source in corpus), command=command, chosen=chosen, **parsed)


def stored_values(stored: dict[str, Any]) -> dict[str, Any]:
    """Options a checkpoint records, parsed as on the command line (older files wrote `time: "80s"`):
    each option's declaration above is the schema of its stored value; an error names its path."""
    values = {}
    for name, value in stored.items():
        if name not in SPECS:
            continue
        try:
            values[name] = parse_value(name, value)
        except ConfigError as exc:
            raise ConfigError(f"options.{name}: {exc}") from None
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(f"options.{name}: not a valid {flag(name)} value ({ascii(value)[:40]})") from None
    return values
