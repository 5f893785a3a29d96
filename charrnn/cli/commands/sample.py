"""`charrnn sample` and `charrnn repl`: generate text from a checkpoint."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from charrnn.adapt.settings import DEFAULT_LR, DEFAULT_SEQ, LEARN_THREADS, AdaptSettings
from charrnn.choices import Engine, OutputFormat, Weights
from charrnn.cli.common import (
    CheckpointOption,
    DeviceOption,
    TempOption,
    device_option,
    err,
    examples,
    guarded,
    threads_option,
)
from charrnn.cli.output import jsonl_output, read_prime, stream_to_stdout, text_output
from charrnn.errors import ConfigError
from charrnn.sampling.controls import CONTROLS, DEFAULTS, Control, Kind
from charrnn.shared_options import DEFAULT_DEVICE, Work

PRIME, ADVANCED = "Prime", "Advanced"
SAMPLE_THREADS = "the idle cores; one sample: at most 2, or 1 with --engine module or int8"

SAMPLE_EPILOG = examples(
    "charrnn sample --temp 0.8                       # newest run's best checkpoint",
    "charrnn sample -c checkpoints/poems --prime 'The sea' --top-p 0.9 --seed 7",
    "charrnn sample --prime-file - -n 5 --stop $'\\n\\n' < prompt.txt",
    "charrnn sample --temp 0.3 --repetition-penalty 1.3      # fewer loops at low temperature",
    "charrnn sample --match '[A-Z][A-Z]+:' -n 5 --length 30  # five speaker names, each a full match",
    "charrnn sample --beam 8 --length 200           # the likeliest continuation found by beam search",
    "charrnn sample --format jsonl -n 8 | jq -r .text",
    "charrnn sample --length 100000 | head -c 300    # ends quietly when head exits",
    "charrnn sample --prime-file chapter1.txt --adapt 60 --length 500   # learn the prime's style first",
)


def control_type(name: str, spec: Control) -> Any:
    """The type Typer parses a control's flag as (ranges are checked by the declaration, not by Typer)."""
    if spec.kind in (Kind.STOPS, Kind.BIAS):
        return Optional[list[str]]
    if spec.kind is Kind.BOOL:
        return bool
    base = {Kind.INT: int, Kind.FLOAT: float}.get(spec.kind, str)
    return Optional[base] if DEFAULTS[name] is None else base


def control_parameter(name: str, spec: Control) -> inspect.Parameter:
    """One `charrnn sample` flag, from the control's declaration (charrnn.sampling.controls)."""
    flag = f"--{spec.flag}/--no-{spec.flag}" if spec.kind is Kind.BOOL else f"--{spec.flag}"
    shown = spec.off if spec.off else None
    option = typer.Option(
        flag, *spec.aliases, help=spec.help + (f" \\[default: {shown}]" if shown else ""), rich_help_panel=spec.panel,
        metavar=spec.metavar, show_default=not shown,
    )  # fmt: skip
    default = None if spec.kind in (Kind.STOPS, Kind.BIAS) else DEFAULTS[name]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[control_type(name, spec), option])  # fmt: skip


def sample(
    checkpoint: CheckpointOption = None,
    prime: Annotated[
        Optional[str], typer.Option("--prime", "-p", help="Text to start from.", rich_help_panel=PRIME)
    ] = None,
    prime_file: Annotated[
        Optional[str],
        typer.Option("--prime-file", help="Read the prime from a UTF-8 file, or - for stdin.", rich_help_panel=PRIME),
    ] = None,
    include_prime: Annotated[
        bool, typer.Option(help="Print the prime before each sample.", rich_help_panel=PRIME)
    ] = True,
    adapt: Annotated[
        int,
        typer.Option(
            min=0,
            help=f"First fit a copy of the weights to the prime: N update steps of {DEFAULT_SEQ} characters "
            f"each, as eval --dynamic (about one pass, prime length / {DEFAULT_SEQ}, did best). 0: off.",
            rich_help_panel=PRIME,
        ),
    ] = 0,
    adapt_lr: Annotated[
        float, typer.Option(help="Step size for --adapt (several passes want less).", rich_help_panel=PRIME)
    ] = DEFAULT_LR,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="jsonl: one {text, seed, index, logprob, chars, finish_reason} object per line.",
            rich_help_panel="Samples",
        ),
    ] = OutputFormat.TEXT,
    device: Annotated[str, device_option(ADVANCED)] = DEFAULT_DEVICE[Work.LATENCY],
    threads: Annotated[
        Optional[int],
        threads_option(SAMPLE_THREADS, ADVANCED),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="fast (matrix products), or module (nn.LSTM per character).", rich_help_panel=ADVANCED),
    ] = Engine.FAST,
    weights: Annotated[
        Weights,
        typer.Option(
            help="int8: quarter-size weights (CPU; faster for many streams), slightly different text.",
            rich_help_panel=ADVANCED,
        ),
    ] = Weights.FP32,
    **controls: Any,
) -> None:
    """Generate text from a checkpoint, streamed to stdout as it is produced."""
    with guarded():
        if prime is not None and prime_file is not None:
            raise ConfigError("give --prime or --prime-file, not both")
        if prime_file is not None:
            prime = read_prime(prime_file)
        prime = prime or ""

        from charrnn.sampling.controls import build
        from charrnn.sampling.numpy_backend import runs_without_torch

        settings, run = build(controls, "flag")  # checked before the checkpoint is read
        learning = AdaptSettings(lr=adapt_lr, flags="--adapt")
        jsonl = output_format is OutputFormat.JSONL
        if runs_without_torch(device, engine.value, weights.value, adapt):
            from charrnn.sampling.generate import generate_from
            from charrnn.sampling.numpy_backend import open_numpy

            backend = open_numpy(checkpoint)
            vocab = backend.checkpoint.vocab
            pieces = generate_from(backend, vocab, prime, settings, run, threads, scored=jsonl)
        else:
            from charrnn.sampling.generate import adapted_model, generate_many
            from charrnn.store.opening import open_model

            opened = open_model(checkpoint, device)
            if adapt:
                from charrnn.device import configure_threads

                configure_threads(threads or LEARN_THREADS)  # as eval --dynamic's pass; sampling sets its own
            model = adapted_model(opened.model, opened.vocab, prime, adapt, learning)
            pieces = generate_many(model, opened.vocab, prime, settings, run, opened.device, engine.value,
                                   weights.value, threads, scored=jsonl)  # fmt: skip
        head = prime if include_prime else ""
        stream_to_stdout(jsonl_output(head, pieces) if jsonl else text_output(head, pieces))


def sample_parameters() -> list[inspect.Parameter]:
    own = inspect.signature(sample, eval_str=True).parameters.values()  # eval_str: Typer reads real types
    fixed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return fixed + [control_parameter(name, spec) for name, spec in CONTROLS.items() if spec.flag]


sample.__signature__ = inspect.Signature(sample_parameters())  # type: ignore[attr-defined]


REPL_EPILOG = "Example:  charrnn repl -c checkpoints/poems --temp 0.7   (then type a line; :help for commands)"


def repl(
    checkpoint: CheckpointOption = None,
    temp: TempOption = 0.8,
    length: Annotated[int, typer.Option("--length", "-l", min=1, help="Characters per reply.")] = 200,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first reply (then seed+1, ...).")] = None,
    device: DeviceOption = DEFAULT_DEVICE[Work.LATENCY],
) -> None:
    """Type a line, get a continuation; the model stays loaded. Commands: :temp :length :seed :reset :help :quit.

    Replies go to stdout; the prompt and command answers go to stderr, so `charrnn repl < lines.txt > out.txt`
    keeps only model text.
    """
    with guarded():
        from charrnn.sampling.pick import SampleSettings
        from charrnn.sampling.repl import Continuation, Message, Quit, Session
        from charrnn.store.opening import open_model

        opened = open_model(checkpoint, device)
        session = Session(opened.model, opened.vocab, SampleSettings(temperature=temp), length, seed, opened.device)
        interactive = sys.stdin.isatty()
        if interactive:
            err(
                f"charrnn repl: {Path(opened.checkpoint.path)}; "
                "type a line to continue it, :help for commands, Ctrl-D to quit"
            )
        while True:
            line = read_line(interactive)
            if line is None:
                break
            reply = session.handle(line)
            if isinstance(reply, Quit):
                break
            if isinstance(reply, Message):
                err(reply.text)
            elif isinstance(reply, Continuation):
                try:
                    stream_to_stdout(with_newline(line, reply.chunks), final_newline=False)
                except KeyboardInterrupt:  # Ctrl-C stops this reply, not the session
                    err("")


def read_line(interactive: bool) -> str | None:
    """The next line without its newline, or None at end of input.

    On a terminal: a `> ` prompt, line editing and history (readline) where Python has it.
    Otherwise lines are read as UTF-8 bytes whatever the locale (a prompt on stderr if stdin is
    a terminal but stdout is not).
    """
    if interactive and sys.stdout.isatty():
        with suppress(ImportError):
            import readline  # noqa: F401  (importing it gives input() editing and history)
        try:
            return input("> ")
        except EOFError:
            err("")
            return None
    if interactive:
        sys.stderr.write("> ")
        sys.stderr.flush()
    raw = sys.stdin.buffer.readline()
    return raw.decode("utf-8", errors="replace").rstrip("\r\n") if raw else None


def with_newline(line: str, chunks: Iterator[str]) -> Iterator[str]:
    """The typed line echoed when input is not a terminal, the reply, then a newline."""
    if not sys.stdin.isatty():
        yield line
    yield from chunks
    yield "\n"
