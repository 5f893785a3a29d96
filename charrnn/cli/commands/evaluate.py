"""`charrnn eval`: the loss of text under a model (and, with --dynamic, while a copy learns from it)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charrnn.adapt.settings import DEFAULT_LR, DEFAULT_SEQ, LEARN_THREADS, AdaptSettings
from charrnn.choices import Errors
from charrnn.cli.common import CheckpointOption, DeviceOption, JsonOption, err, examples, guarded, threads_option
from charrnn.shared_options import DEFAULT_DEVICE, Work

if TYPE_CHECKING:
    from charrnn.evaluate import EvalResult

DYNAMIC = "Dynamic evaluation"

EPILOG = examples(
    "charrnn eval held_out.txt -c checkpoints/poems",
    "charrnn eval held_out.txt --json                # loss, bpc, perplexity and chars as JSON",
    "charrnn eval held_out.txt --dynamic             # also the loss while the model learns from the text",
)


def evaluate(
    files: Annotated[list[str], typer.Argument(help="Text files (or - for stdin) to score.")],
    checkpoint: CheckpointOption = None,
    as_json: JsonOption = False,
    errors: Annotated[Errors, typer.Option(help="Invalid UTF-8 in the text.")] = Errors.STRICT,
    device: DeviceOption = DEFAULT_DEVICE[Work.THROUGHPUT],
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Also score the text while a copy of the model learns from it, segment by segment "
            "(each segment scored before it is learned from; one sequential pass, slower).",
            rich_help_panel=DYNAMIC,
        ),
    ] = False,
    dynamic_lr: Annotated[
        float, typer.Option(help="Step size of each update (RMS-normalised).", rich_help_panel=DYNAMIC)
    ] = DEFAULT_LR,
    dynamic_seq: Annotated[
        int, typer.Option(help="Characters per segment: one update after each.", rich_help_panel=DYNAMIC)
    ] = DEFAULT_SEQ,
    threads: Annotated[
        int, threads_option(f"{LEARN_THREADS}; the dynamic pass's last digits depend on the count", DYNAMIC)
    ] = LEARN_THREADS,
) -> None:
    """Score text under a model: loss in nats/char, bits/char and perplexity."""
    with guarded():
        settings = AdaptSettings(lr=dynamic_lr, seq=dynamic_seq)  # checked even without --dynamic
        from charrnn.cli.loadbar import CorpusBar, PassBar
        from charrnn.cli.report import is_interactive
        from charrnn.data.corpus import load_corpus, skip_warnings
        from charrnn.evaluate import evaluate_ids
        from charrnn.store.opening import open_model

        opened = open_model(checkpoint, device)
        bar = CorpusBar(sys.stderr, is_interactive(sys.stderr))
        try:
            corpus = load_corpus(files, errors.value, vocab=opened.vocab, progress=bar)
        finally:
            bar.close()
        for message in skip_warnings(corpus.skipped, corpus.passed_over):
            err(f"charrnn: warning: {message}")
        result = evaluate_ids(opened.model, corpus.ids, opened.device)
        learned = None
        if dynamic:
            from charrnn.adapt.learn import evaluate_dynamic
            from charrnn.device import configure_threads

            configure_threads(threads)
            with PassBar("dynamic", result.chars, is_interactive(sys.stderr)) as progress:
                learned = evaluate_dynamic(opened.model, corpus.ids, opened.device, settings, progress)
        if as_json:
            record: dict[str, Any] = result.to_dict()
            if learned is not None:
                record["dynamic"] = {**learned.to_dict(), **settings.to_dict()}
            print(json.dumps(record))
            return
        print(f"loss {result.loss:.4f} nats/char  {figures(result)}  ({result.chars:,} chars)")
        if learned is not None:
            knobs = f"lr {settings.lr:g}, seq {settings.seq}"
            print(f"dynamic loss {learned.loss:.4f} nats/char  {figures(learned)}  ({knobs})")


def figures(result: EvalResult) -> str:
    return f"bpc {result.bpc:.4f}  perplexity {result.perplexity:.3f}"
