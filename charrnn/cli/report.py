"""Training progress on stderr: a banner, progress lines, validations and a summary."""

from __future__ import annotations

import math
import sys
from typing import Any

from charrnn.durations import format_duration
from charrnn.train import TrainResult

PLAIN_EVERY_S = 10.0


def fmt_loss(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


class TrainReport:
    """Renders the trainer's events; on a terminal the progress line redraws in place."""

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_plain = 0.0
        self.last_val: float | None = None
        self.line_open = False

    def write(self, text: str) -> None:
        if self.line_open:
            self.stream.write("\n")
            self.line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_start(self, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        corpus, model = info["corpus"], info["model"]
        sources = corpus["sources"]
        names = sources[0] if len(sources) == 1 else f"{len(sources)} files"
        self.write(
            f"corpus  {names}: {corpus['chars']:,} chars, vocab {info['vocab_size']}, "
            f"train {corpus['train_chars']:,} / val {corpus['val_chars']:,}"
        )
        self.write(
            f"model   {model['num_layers']}x{model['hidden_size']} {model['cell'].upper()}, "
            f"embed {model['embed_size']}, dropout {model['dropout']:g}, {info['parameters']:,} parameters"
        )
        self.write(
            f"train   {info['device']} {info['dtype']} x{info['threads']} threads, batch {info['batch_size']} x "
            f"{info['seq_len']} chars, lr {info['lr']:g}, budget {info['budget']}, validate every {info['eval_every']}"
        )
        self.write(f"run     {info['run_dir']}")

    def on_log(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        line = (
            f"step {row['step']:>6}  epoch {row['epoch']:.2f}  loss {fmt_loss(row['train_loss'])}  "
            f"val {fmt_loss(self.last_val)}  lr {row['lr']:.2e}  {row['chars_per_s']:,.0f} chars/s  "
            f"{format_duration(row['elapsed_s'])} ({row['progress']:.0%})"
        )
        if self.interactive:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self.line_open = True
        elif row["elapsed_s"] - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = row["elapsed_s"]
            self.write(line)

    def on_eval(self, row: dict[str, Any]) -> None:
        self.last_val = row["val_loss"]
        if self.quiet:
            return
        mark = "  (best)" if row["best"] else ""
        self.write(
            f"val   step {row['step']:>6}  loss {fmt_loss(row['val_loss'])} nats/char  "
            f"{fmt_loss(row['val_bpc'])} bits/char{mark}"
        )

    def on_warning(self, message: str) -> None:
        self.write(f"charrnn: warning: {message}")

    def on_end(self, result: TrainResult) -> None:
        best = result.best_val_loss
        quality = f"best val {fmt_loss(best)} nats/char ({fmt_loss(best / math.log(2) if best else None)} bits/char)"
        self.write(
            f"done    {result.steps} steps, {result.epochs:.2f} epochs in {format_duration(result.elapsed_s)} "
            f"({result.chars_per_s:,.0f} chars/s, stopped by {result.stop_reason}); {quality}"
        )
        self.write(f"saved   {result.best_path}  (sample: charrnn sample -c {result.best_path})")
