"""`charrnn eval`: the loss of text under a model."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from charrnn.choices import Errors
from charrnn.cli.common import CheckpointOption, JsonOption, err, examples, guarded

EPILOG = examples(
    "charrnn eval held_out.txt -c checkpoints/poems",
    "charrnn eval held_out.txt --json                # loss, bpc, perplexity and chars as JSON",
)


def evaluate(
    files: Annotated[list[str], typer.Argument(help="Text files (or - for stdin) to score.")],
    checkpoint: CheckpointOption = None,
    as_json: JsonOption = False,
    errors: Annotated[Errors, typer.Option(help="Invalid UTF-8 in the text.")] = Errors.STRICT,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Score text under a model: loss in nats/char, bits/char and perplexity."""
    with guarded():
        from charrnn.cli.loadbar import CorpusBar
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
        for message in skip_warnings(corpus.skipped):
            err(f"charrnn: warning: {message}")
        result = evaluate_ids(opened.model, corpus.ids, opened.device)
        if as_json:
            print(json.dumps(result.to_dict()))
        else:
            print(
                f"loss {result.loss:.4f} nats/char  bpc {result.bpc:.4f}  "
                f"perplexity {result.perplexity:.3f}  ({result.chars:,} chars)"
            )
