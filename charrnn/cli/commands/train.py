"""`charrnn train`: its flags are built from the option declarations (training.options), so each
flag's name, default, range, help and panel are written once, there."""

from __future__ import annotations

import inspect
import shlex
import sys
from typing import Annotated, Any, Optional

import typer

from charrnn.cli.common import err, examples, guarded, main_rank, markup_safe
from charrnn.files import display_path
from charrnn.shared_options import with_default
from charrnn.training.options import SPECS, Kind, Spec, TrainOptions, default_of, value_text

EPILOG = examples(
    "charrnn train poems.txt --time 10m              # sizes chosen for the corpus and budget",
    "charrnn train src/ --hidden 768 --steps 20000   # a directory of .txt files",
    "cat *.log | charrnn train - --time 1h30m -q     # stdin; only warnings and the summary",
)


def cli_type(name: str, spec: Spec) -> Any:
    """The Python type Typer parses a flag as: numbers as numbers, choices as their Enum, the rest as text."""
    if spec.kind is Kind.CHOICE:
        return spec.choices
    base = {Kind.INT: int, Kind.FLOAT: float}.get(spec.kind, str)
    return Optional[base] if default_of(name) is None else base


def cli_option(name: str, spec: Spec) -> Any:
    """The Typer declaration of one training option."""
    help_text = with_default(spec.help, spec.planned) if spec.planned else spec.help
    bounds: dict[str, Any] = {}
    if spec.maximum is not None and spec.maximum > 1e9:  # --seed: the 64-bit range says nothing useful here
        pass
    elif spec.kind in (Kind.INT, Kind.FLOAT) and spec.minimum is not None and spec.maximum is not None:
        bounds = {"min": spec.minimum, "max": spec.maximum}
    elif spec.kind in (Kind.INT, Kind.FLOAT) and spec.minimum is not None:
        bounds = {"min": spec.minimum}
    if spec.kind is Kind.INT:
        bounds = {key: int(value) for key, value in bounds.items()}
    return typer.Option(
        "--" + (spec.flag or name).replace("_", "-"),
        help=markup_safe(help_text),
        rich_help_panel=spec.panel,
        metavar=spec.metavar,
        show_default=not spec.planned,
        **bounds,
    )


def parameters() -> list[inspect.Parameter]:
    corpus = inspect.Parameter(
        "corpus",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            Optional[list[str]],
            typer.Argument(
                help="Text files, directories (all their files), or - for stdin. Default: the stdlib source."
            ),
        ],
    )
    options = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default_of(name) if spec.kind is Kind.CHOICE else value_text(default_of(name)),
            annotation=Annotated[cli_type(name, spec), cli_option(name, spec)],
        )
        for name, spec in SPECS.items()
    ]
    quiet = inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--quiet", "-q", help="Only warnings and the summary.", rich_help_panel="Output")
        ],
    )
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    return [context, corpus, *options, quiet]


def typed_flags(context: typer.Context, values: dict[str, Any]) -> tuple[str, ...]:
    """The options whose flags were on the command line (Typer fills in every other one's default)."""
    typed = ("COMMANDLINE", "ENVIRONMENT")
    return tuple(name for name in values if getattr(context.get_parameter_source(name), "name", "") in typed)


def options_from_flags(corpus: list[str] | None, values: dict[str, Any], context: typer.Context) -> TrainOptions:
    """The parsed TrainOptions for these flag values (the default corpus when none is given)."""
    from charrnn.training.options import parse_options

    sources = tuple(corpus or ())
    if not sources and values.get("resume") is None:
        from charrnn.data.default_corpus import build_default_corpus

        if main_rank():
            err("charrnn: no corpus given; using Python's standard library source (charrnn corpus)")
        sources = (str(build_default_corpus()),)
    command = shlex.join(["charrnn", *(display_path(arg) for arg in sys.argv[1:])])  # as text a checkpoint holds
    return parse_options(sources, command=command, chosen=typed_flags(context, values), **values)


def train(ctx: typer.Context, corpus: list[str] | None = None, *, quiet: bool = False, **values: Any) -> None:
    """Train a model on CORPUS and keep its best and last checkpoints in the run directory."""
    with guarded():
        from charrnn.cli.report import TrainReport
        from charrnn.errors import Interrupted
        from charrnn.training.loop import Trainer

        options = options_from_flags(corpus, values, ctx)
        with TrainReport(quiet=quiet) as report:
            trainer = Trainer(options, report)
            resumed_from = trainer.parts.resumed_from
            if resumed_from and quiet and main_rank():  # otherwise the banner says it
                err(f"charrnn: resuming {trainer.run_dir} at step {trainer.state.step} from {resumed_from}")
            try:
                trainer.run()
            except Interrupted as exc:
                if main_rank():
                    err(f"charrnn: interrupted: {exc}")
                raise typer.Exit(exc.exit_code) from None


train.__signature__ = inspect.Signature(parameters())  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in inspect.signature(train).parameters.values()}
