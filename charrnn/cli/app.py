"""The `charrnn` command: parse flags, call the library, print results, map errors to exit codes.

This is the only layer that prints. Heavy imports (torch) happen inside the commands so that
`charrnn --help` stays fast.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from charrnn.errors import CharRNNError, ConfigError, InputError
from charrnn.version import __version__

if TYPE_CHECKING:
    from charrnn.sampling.generate import Piece

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

MODEL, OPTIM, BUDGET, CKPTS, SYSTEM, OUTPUT = "Model", "Optimisation", "Budget", "Checkpoints", "System", "Output"

app = typer.Typer(
    name="charrnn",
    help="Train character-level language models on your own text and generate from them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples:\n"
    "  charrnn train poems.txt --time 10m      # train; checkpoints go to checkpoints/poems\n"
    "  charrnn sample --temp 0.8 --length 500  # generate from the newest run\n"
    "  charrnn runs                            # which run was best\n"
    "  charrnn plot checkpoints/*              # compare loss curves\n\n"
    "Shell completion: charrnn --install-completion (bash, zsh, fish, PowerShell); restart the shell.",
)


def examples(*lines: str) -> str:
    """A help epilog: one example command per line (square brackets escaped for Rich markup)."""
    return "Examples:\n" + "\n".join("  " + line.replace("[", "\\[") for line in lines)


def err(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)


def main_rank() -> bool:
    """False in the processes torchrun starts besides rank 0: they train but stay silent."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def guarded() -> Iterator[None]:
    """Turn domain errors into one line and the documented exit code; Ctrl-C into 130."""
    try:
        yield
    except CharRNNError as exc:
        if main_rank():  # every rank meets the same bad input; one line says it
            err(f"charrnn: error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if main_rank():
            err("charrnn: interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        err("charrnn: error: out of memory; use a smaller --batch-size, --hidden or corpus")
        raise typer.Exit(EXIT_FAILURE) from None


def version_callback(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train character-level language models on your own text and generate from them.

    Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 bad input data or checkpoint, 130 interrupted, 143 terminated.
    """


# -- train ------------------------------------------------------------------------------------


@app.command(
    epilog=examples(
        "charrnn train poems.txt --time 10m              # sizes chosen for the corpus and budget",
        "charrnn train src/ --hidden 768 --steps 20000   # a directory of .txt files",
        "cat *.log | charrnn train - --time 1h30m -q     # stdin; only warnings and the summary",
    )
)
def train(
    corpus: Annotated[
        Optional[list[str]],
        typer.Argument(help="Text files, directories (all their files), or - for stdin. Default: the stdlib source."),
    ] = None,
    out: Annotated[
        Optional[str], typer.Option(help="Run directory. [default: checkpoints/<corpus name>]", rich_help_panel=CKPTS)
    ] = None,
    cell: Annotated[str, typer.Option(help="Recurrent cell: lstm, gru or rnn.", rich_help_panel=MODEL)] = "lstm",
    layers: Annotated[
        Optional[int], typer.Option(min=1, help="Stacked layers. [default: 2]", rich_help_panel=MODEL)
    ] = None,
    hidden: Annotated[
        Optional[int],
        typer.Option(min=1, help="Hidden units per layer. [default: by corpus size and budget]", rich_help_panel=MODEL),
    ] = None,
    embed: Annotated[
        Optional[int], typer.Option(min=1, help="Character embedding size. [default: 64]", rich_help_panel=MODEL)
    ] = None,
    dropout: Annotated[
        Optional[float],
        typer.Option(
            min=0.0, max=0.95, help="Dropout between layers. [default: by expected epochs]", rich_help_panel=MODEL
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(min=1, help="Parallel streams per step. [default: 32 on CPU]", rich_help_panel=OPTIM),
    ] = None,
    seq_len: Annotated[
        Optional[int],
        typer.Option(min=1, help="Characters per window (BPTT length). [default: 64 on CPU]", rich_help_panel=OPTIM),
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option(help="Peak learning rate. [default: 0.01 x sqrt(384/hidden)]", rich_help_panel=OPTIM),
    ] = None,
    grad_clip: Annotated[
        float, typer.Option(min=0.0, help="Clip the gradient norm to this (0: off).", rich_help_panel=OPTIM)
    ] = 1.0,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW weight decay.", rich_help_panel=OPTIM)] = 0.01,
    val_frac: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.9, help="Last fraction of the text held out for validation.", rich_help_panel=OPTIM
        ),
    ] = 0.1,
    val_max_chars: Annotated[
        int, typer.Option(min=2, help="Validate on at most this many held-out chars.", rich_help_panel=OPTIM)
    ] = 131_072,
    time: Annotated[
        Optional[str],
        typer.Option(
            "--time",
            help="Wall-clock budget, final validation included: 90s, 10m, 1h30m. [default: 10m if no budget]",
            rich_help_panel=BUDGET,
        ),
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option(min=1, help="Stop after this many steps.", rich_help_panel=BUDGET)
    ] = None,
    epochs: Annotated[
        Optional[float], typer.Option(help="Stop after this many passes over the text.", rich_help_panel=BUDGET)
    ] = None,
    patience: Annotated[
        Optional[int], typer.Option(min=1, help="Stop after N validations without improvement.", rich_help_panel=BUDGET)
    ] = None,
    eval_every: Annotated[
        Optional[str],
        typer.Option(
            help="Validate every N steps or every DURATION. [default: 1/4 of the budget, costing at most ~5% of it]",
            rich_help_panel=BUDGET,
        ),
    ] = None,
    save_every: Annotated[
        str, typer.Option(help="Save last every N steps or every DURATION.", rich_help_panel=CKPTS)
    ] = "5m",
    resume: Annotated[
        Optional[str],
        typer.Option(
            "--resume",
            metavar="RUN_DIR|CKPT",
            help="Continue a run exactly where it stopped; corpus, model and budget come from the run.",
            rich_help_panel=CKPTS,
        ),
    ] = None,
    init_from: Annotated[
        Optional[str],
        typer.Option(
            metavar="CKPT",
            help="Fine-tune: start a new run from this checkpoint's weights (its vocab must cover the corpus).",
            rich_help_panel=CKPTS,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", rich_help_panel=SYSTEM)] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 where the hardware has it), fp32, bf16, fp16.", rich_help_panel=SYSTEM)
    ] = "auto",
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="CPU threads. [default: usable cores]", rich_help_panel=SYSTEM)
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (weights, dropout).", rich_help_panel=SYSTEM)] = 1337,
    errors: Annotated[
        str,
        typer.Option(help="Invalid UTF-8 in the corpus: strict (error), replace or ignore.", rich_help_panel=SYSTEM),
    ] = "strict",
    doc_separator: Annotated[
        str,
        typer.Option(
            help="Text put between the files of a multi-file corpus, e.g. $'\\n<|end|>\\n'. [default: a blank line]",
            show_default=False,
            rich_help_panel=SYSTEM,
        ),
    ] = "\n\n",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and the summary.", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """Train a model on CORPUS and keep its best and last checkpoints in the run directory."""
    with guarded():
        from charrnn.cli.report import TrainReport
        from charrnn.errors import Interrupted
        from charrnn.training.loop import Trainer, TrainOptions

        sources = tuple(corpus or ())
        if not sources and resume is None:
            from charrnn.data.default_corpus import build_default_corpus

            if main_rank():
                err("charrnn: no corpus given; using Python's standard library source (charrnn corpus)")
            sources = (str(build_default_corpus()),)
        options = TrainOptions(
            corpus=sources,
            out=out,
            cell=cell,
            num_layers=layers,
            hidden_size=hidden,
            embed_size=embed,
            dropout=dropout,
            batch_size=batch_size,
            seq_len=seq_len,
            lr=lr,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            val_frac=val_frac,
            val_max_chars=val_max_chars,
            time=time,
            steps=steps,
            epochs=epochs,
            patience=patience,
            eval_every=eval_every,
            save_every=save_every,
            device=device,
            dtype=dtype,
            threads=threads,
            seed=seed,
            errors=errors,
            doc_separator=doc_separator,
            command=shlex.join(["charrnn", *sys.argv[1:]]),
            resume=resume,
            init_from=init_from,
        )
        with TrainReport(quiet=quiet) as report:
            trainer = Trainer(options, report)
            if trainer.resumed_from and quiet and main_rank():  # otherwise the banner says it
                err(f"charrnn: resuming {trainer.run_dir} at step {trainer.state.step} from {trainer.resumed_from}")
            try:
                trainer.run()
            except Interrupted as exc:
                if main_rank():
                    err(f"charrnn: interrupted: {exc}")
                raise typer.Exit(exc.exit_code) from None


# -- sample -----------------------------------------------------------------------------------


PRIME, SAMPLES, ADVANCED = "Prime", "Samples", "Advanced"


@app.command(
    epilog=examples(
        "charrnn sample --temp 0.8                       # newest run's best checkpoint",
        "charrnn sample -c checkpoints/poems --prime 'The sea' --top-p 0.9 --seed 7",
        "charrnn sample --prime-file - -n 5 --stop $'\\n\\n' < prompt.txt",
        "charrnn sample --format jsonl -n 8 | jq -r .text",
        "charrnn sample --length 100000 | head -c 300    # ends quietly when head exits",
    )
)
def sample(
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", "-c", help="Checkpoint file or run directory. \\[default: newest run's best]"),
    ] = None,
    temp: Annotated[
        float,
        typer.Option("--temp", "--temperature", "-t", min=0.0, help="Temperature; 0 picks the likeliest character."),
    ] = 1.0,
    length: Annotated[
        int, typer.Option("--length", "-l", min=0, help="Characters to generate per sample (the prime not counted).")
    ] = 1000,
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
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Sample only from the K likeliest characters.")] = None,
    top_p: Annotated[
        Optional[float], typer.Option(help="Sample from the smallest set with this much probability.")
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option(help="Random seed: the same seed gives the same text; sample i uses seed+i."),
    ] = None,
    num_samples: Annotated[
        int,
        typer.Option(
            "--num-samples", "-n", min=1, help="Independent samples, computed together.", rich_help_panel=SAMPLES
        ),
    ] = 1,
    stop: Annotated[
        Optional[list[str]],
        typer.Option(help="End a sample when it produces STR (repeatable).", rich_help_panel=SAMPLES),
    ] = None,
    keep_stop: Annotated[
        bool, typer.Option(help="Keep the stop string at the end of the sample.", rich_help_panel=SAMPLES)
    ] = True,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="text, or jsonl: one {text, seed, index} object per line.", rich_help_panel=SAMPLES
        ),
    ] = "text",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", rich_help_panel=ADVANCED)] = "cpu",
    threads: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="CPU threads. \\[default: the idle cores; one sample: at most 2, or 1 with --engine module or int8]",
            rich_help_panel=ADVANCED,
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="fast (matrix products), or module (nn.LSTM per character).", rich_help_panel=ADVANCED),
    ] = "fast",
    weights: Annotated[
        str,
        typer.Option(
            help="fp32, or int8: quarter-size weights (CPU; faster for many streams), slightly different text.",
            rich_help_panel=ADVANCED,
        ),
    ] = "fp32",
) -> None:
    """Generate text from a checkpoint, streamed to stdout as it is produced."""
    with guarded():
        if output_format not in ("text", "jsonl"):
            raise ConfigError(f"--format must be text or jsonl, got {output_format!r}")
        if prime is not None and prime_file is not None:
            raise ConfigError("give --prime or --prime-file, not both")
        if prime_file is not None:
            prime = read_prime(prime_file)
        prime = prime or ""

        from charrnn.device import resolve_device
        from charrnn.sampling.generate import SampleSettings, generate_many, sample_seeds
        from charrnn.store.checkpoint import load_checkpoint, load_model
        from charrnn.store.runs import resolve_checkpoint

        settings = SampleSettings(temperature=temp, top_k=top_k, top_p=top_p)
        target = resolve_device(device)
        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
        model = load_model(ckpt, target)
        seeds = sample_seeds(seed, num_samples)
        stops = tuple(stop or ())
        pieces = generate_many(
            model, ckpt.vocab, prime, length, settings, seeds, target, stops, keep_stop, engine, weights, threads
        )
        head = prime if include_prime else ""
        stream_to_stdout(text_output(head, pieces) if output_format == "text" else jsonl_output(head, seeds, pieces))


def read_prime(path: str) -> str:
    """The prime from a UTF-8 file or stdin (`-`), as given (a trailing newline is kept)."""
    where = "stdin" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: prime file not found") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read prime file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: prime is not valid UTF-8 (byte {exc.start})") from None


def text_output(head: str, pieces: Iterator[Piece]) -> Iterator[str]:
    """Each sample as head + text; samples separated by one blank line (counting their own newlines)."""
    new_sample, tail = True, ""  # tail: the last two characters written
    for piece in pieces:
        if new_sample:
            if piece.index:
                separator = "\n\n"[len(tail) - len(tail.rstrip("\n")) :]
                yield separator
                tail = (tail + separator)[-2:]
            if head:
                yield head
                tail = (tail + head)[-2:]
            new_sample = False
        if piece.text:
            yield piece.text
            tail = (tail + piece.text)[-2:]
        new_sample = piece.done


def jsonl_output(head: str, seeds: list[int], pieces: Iterator[Piece]) -> Iterator[str]:
    """One JSON object per finished sample: {"text", "seed", "index"}."""
    parts: list[str] = [head]
    for piece in pieces:
        parts.append(piece.text)
        if piece.done:
            record = {"text": "".join(parts), "seed": seeds[piece.index], "index": piece.index}
            yield json.dumps(record, ensure_ascii=False) + "\n"
            parts = [head]


def stream_to_stdout(chunks: Iterable[str], final_newline: bool = True) -> None:
    """Write text to stdout as UTF-8 (whatever the locale), flushing each chunk; a closed pipe ends quietly.

    On a terminal a newline is added at the end so the shell prompt starts on its own line.
    """
    out = sys.stdout.buffer
    try:
        last = ""
        for text in chunks:
            out.write(text.encode("utf-8"))
            out.flush()
            last = text or last
        if final_newline and sys.stdout.isatty() and not last.endswith("\n"):
            out.write(b"\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(EXIT_OK) from None


# -- repl -------------------------------------------------------------------------------------


@app.command(epilog="Example:  charrnn repl -c checkpoints/poems --temp 0.7   (then type a line; :help for commands)")
def repl(
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", "-c", help="Checkpoint file or run directory. \\[default: newest run's best]"),
    ] = None,
    temp: Annotated[
        float,
        typer.Option("--temp", "--temperature", "-t", min=0.0, help="Temperature; 0 picks the likeliest character."),
    ] = 0.8,
    length: Annotated[int, typer.Option("--length", "-l", min=1, help="Characters per reply.")] = 200,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first reply (then seed+1, ...).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Type a line, get a continuation; the model stays loaded. Commands: :temp :length :seed :reset :help :quit.

    Replies go to stdout; the prompt and command answers go to stderr, so `charrnn repl < lines.txt > out.txt`
    keeps only model text.
    """
    with guarded():
        from charrnn.device import resolve_device
        from charrnn.sampling.generate import SampleSettings
        from charrnn.sampling.repl import Continuation, Message, Quit, Session
        from charrnn.store.checkpoint import load_checkpoint, load_model
        from charrnn.store.runs import resolve_checkpoint

        settings = SampleSettings(temperature=temp)
        target = resolve_device(device)
        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
        session = Session(load_model(ckpt, target), ckpt.vocab, settings, length, seed, target)
        interactive = sys.stdin.isatty()
        if interactive:
            err(f"charrnn repl: {Path(ckpt.path)}; type a line to continue it, :help for commands, Ctrl-D to quit")
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


# -- eval -------------------------------------------------------------------------------------


@app.command(
    name="eval",
    epilog=examples(
        "charrnn eval held_out.txt -c checkpoints/poems",
        "charrnn eval held_out.txt --json                # loss, bpc, perplexity and chars as JSON",
    ),
)
def evaluate(
    files: Annotated[list[str], typer.Argument(help="Text files (or - for stdin) to score.")],
    checkpoint: Annotated[
        Optional[str],
        typer.Option("--checkpoint", "-c", help="Checkpoint file or run directory. [default: newest run's best]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    errors: Annotated[str, typer.Option(help="Invalid UTF-8: strict, replace or ignore.")] = "strict",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Score text under a model: loss in nats/char, bits/char and perplexity."""
    with guarded():
        from charrnn.cli.loadbar import CorpusBar
        from charrnn.cli.report import is_interactive
        from charrnn.data.corpus import load_corpus, skip_warnings
        from charrnn.device import resolve_device
        from charrnn.evaluate import evaluate_ids
        from charrnn.store.checkpoint import load_checkpoint, load_model
        from charrnn.store.runs import resolve_checkpoint

        target = resolve_device(device)
        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
        bar = CorpusBar(sys.stderr, is_interactive(sys.stderr))
        try:
            corpus = load_corpus(files, errors, vocab=ckpt.vocab, progress=bar)
        finally:
            bar.close()
        for message in skip_warnings(corpus.skipped):
            err(f"charrnn: warning: {message}")
        result = evaluate_ids(load_model(ckpt, target), corpus.ids, target)
        if as_json:
            print(json.dumps(result.to_dict()))
        else:
            print(
                f"loss {result.loss:.4f} nats/char  bpc {result.bpc:.4f}  "
                f"perplexity {result.perplexity:.3f}  ({result.chars:,} chars)"
            )


# -- info -------------------------------------------------------------------------------------


@app.command(
    epilog=examples(
        "charrnn info                                    # newest run",
        "charrnn info checkpoints/poems/last.safetensors --json",
    )
)
def info(
    checkpoint: Annotated[
        Optional[str], typer.Argument(help="Checkpoint file or run directory. [default: newest run's best]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Describe a checkpoint: model, vocabulary, parameters, training progress."""
    with guarded():
        from charrnn.cli.describe import checkpoint_summary, format_summary
        from charrnn.store.checkpoint import load_checkpoint
        from charrnn.store.runs import resolve_checkpoint

        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
        summary = checkpoint_summary(ckpt)
        if as_json:
            print(json.dumps(summary, ensure_ascii=False, indent=2))
            return
        print(format_summary(summary))
        from charrnn.cli.curve import encodable
        from charrnn.cli.describe import checkpoint_curve

        console = stdout_console()
        width = min(console.width, 100) if console.is_terminal else 80
        console.print("curve")
        for line in checkpoint_curve(ckpt, width, ascii_only=not encodable(getattr(sys.stdout, "encoding", None))):
            console.print(line)


# -- plot and runs ----------------------------------------------------------------------------


def stdout_console() -> Any:
    """A Rich console on stdout: colour on a terminal (unless NO_COLOR), plain text in a pipe."""
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False, soft_wrap=True)


@app.command(
    epilog=examples(
        "charrnn plot                                    # newest run, in the terminal",
        "charrnn plot checkpoints/* -o curves.png        # every run on one chart (pip install 'charrnn[plot]')",
        "charrnn plot checkpoints/a checkpoints/b --x time",
    )
)
def plot(
    runs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Run directories (or checkpoints in them) to draw together. [default: newest run]"),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="Write an image (.png, .svg, .pdf; needs matplotlib) instead of drawing in the terminal.",
        ),
    ] = None,
    x: Annotated[str, typer.Option("--x", help="Horizontal axis: step, time (seconds) or epoch.")] = "step",
    height: Annotated[int, typer.Option(min=5, max=60, help="Terminal chart height in lines.")] = 14,
) -> None:
    """Draw the training and validation loss curves of one or several runs on one chart."""
    with guarded():
        from charrnn.cli.curve import encodable
        from charrnn.cli.plot import terminal_chart, write_image
        from charrnn.store.metrics import newest_run, read_run

        targets = runs or [str(newest_run(Path("checkpoints")))]
        logs = [read_run(target) for target in targets]
        if output is not None:
            err(f"charrnn: wrote {write_image(logs, output, x)}")
            return
        console = stdout_console()
        width = min(console.width, 120) if console.is_terminal else 100
        ascii_only = not encodable(getattr(sys.stdout, "encoding", None))
        for line in terminal_chart(logs, x, width=width, height=height, ascii_only=ascii_only):
            console.print(line)


@app.command(
    epilog=examples(
        "charrnn runs                                    # runs under ./checkpoints, newest first",
        "charrnn runs experiments/ --sort bpc            # best validation bits/char first",
    )
)
def runs(
    directory: Annotated[Path, typer.Argument(help="Where to look for run directories (searched recursively).")] = Path(
        "checkpoints"
    ),
    sort: Annotated[str, typer.Option(help="Order: date (newest first) or bpc (best first).")] = "date",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array instead of a table.")] = False,
) -> None:
    """List the runs under DIRECTORY: corpus, model size, steps, best validation bits/char, date."""
    with guarded():
        from charrnn.cli.runs_table import format_table, run_row, sort_rows
        from charrnn.errors import ConfigError
        from charrnn.store.metrics import find_runs

        if sort not in ("date", "bpc"):
            raise ConfigError(f"--sort {sort!r}: use date or bpc")
        rows = sort_rows([run_row(run, directory) for run in find_runs(directory)], sort)
        if as_json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        if not rows:
            err(f"charrnn: no runs under {directory}/; train one with `charrnn train FILE`")
            return
        console = stdout_console()
        table = format_table(rows)
        console.print(table[0], style="bold")
        for line in table[1:]:
            console.print(line)


# -- verify -----------------------------------------------------------------------------------


@app.command(epilog="Example:  charrnn verify checkpoints/poems/last.safetensors")
def verify(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file or run directory (checks best and last).")],
) -> None:
    """Check a checkpoint's digest and structure without running it: exit 0 if sound, 3 with the reason."""
    with guarded():
        from charrnn.store.checkpoint import verify_checkpoint
        from charrnn.store.runs import BEST, LAST

        target = Path(checkpoint)
        paths = [target / n for n in (BEST, LAST) if (target / n).is_file()] if target.is_dir() else [target]
        if not paths:
            paths = [target]  # let verify_checkpoint name the problem
        for path in paths:
            ckpt = verify_checkpoint(path)
            step = ckpt.meta.get("step", "?")
            print(f"ok  {path}  (step {step}, {len(ckpt.weights)} weight tensors, digest verified)")


# -- corpus -----------------------------------------------------------------------------------


@app.command()
def corpus(
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the corpus here instead of the cache.")
    ] = None,
) -> None:
    """Build the default corpus (this Python's standard library source) and print its path."""
    with guarded():
        from charrnn.data.default_corpus import build_default_corpus

        path = build_default_corpus(output)
        err(f"charrnn: default corpus: {path.stat().st_size:,} bytes")
        print(path)


def main() -> None:
    """Console entry point: usage errors as one line (exit 2), everything else through `guarded`."""
    from charrnn.cli.helpfmt import polish

    command = typer.main.get_command(app)
    polish(command)
    try:
        code = command(standalone_mode=False)
    except typer.Abort:
        err("charrnn: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # Typer's usage errors (bad flag, bad value) carry `format_message` and `exit_code`.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message()
        if message:  # empty when the help text was already shown (no arguments given)
            err(f"charrnn: error: {message}{hint}")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
