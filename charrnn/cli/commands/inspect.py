"""`charrnn info` and `charrnn verify`: what a checkpoint holds, and whether it is sound."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import JsonOption, examples, guarded, markup_safe, stdout_console
from charrnn.shared_options import CHECKPOINT_HELP

INFO_EPILOG = examples(
    "charrnn info                                    # newest run",
    "charrnn info checkpoints/poems/last.safetensors --json",
)
VERIFY_EPILOG = "Example:  charrnn verify checkpoints/poems/last.safetensors"


def info(
    checkpoint: Annotated[Optional[str], typer.Argument(help=markup_safe(CHECKPOINT_HELP))] = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a checkpoint: model, vocabulary, parameters, training progress."""
    with guarded():
        from charrnn.cli.curve import encodable
        from charrnn.cli.describe import checkpoint_curve, checkpoint_summary, format_summary
        from charrnn.store.checkpoint import load_checkpoint
        from charrnn.store.runs import resolve_checkpoint

        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
        summary = checkpoint_summary(ckpt)
        if as_json:
            print(json.dumps(summary, ensure_ascii=False, indent=2))
            return
        print(format_summary(summary))
        console = stdout_console()
        width = min(console.width, 100) if console.is_terminal else 80
        console.print("curve")
        for line in checkpoint_curve(ckpt, width, ascii_only=not encodable(getattr(sys.stdout, "encoding", None))):
            console.print(line)


def verify(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file or run directory (checks best and last).")],
) -> None:
    """Check a checkpoint's digest and structure without running it: exit 0 if sound, 3 with the reason."""
    with guarded():
        from charrnn.store.runs import BEST, LAST
        from charrnn.training.state_check import verify_run_checkpoint

        target = Path(checkpoint)
        paths = [target / n for n in (BEST, LAST) if (target / n).is_file()] if target.is_dir() else [target]
        if not paths:
            paths = [target]  # let verify_run_checkpoint name the problem
        for path in paths:
            ckpt = verify_run_checkpoint(path)
            print(f"ok  {path}  (step {ckpt.info.step}, {len(ckpt.weights)} weight tensors, digest verified)")
