"""Training progress on stderr: a banner, live progress, validations with a sample, and a summary.

Two renderings of the same events:
- a terminal gets a Rich live display (bar, step, loss and bits/char, last val loss, lr, chars/s,
  ETA) redrawn in place, with validations and samples printed above it;
- anything else (a log file, CI, nohup) gets plain lines every PLAIN_EVERY_S seconds and never a
  control character, so `tail -f` and `grep` work.
`--quiet` keeps only warnings and the final summary. Colour follows Rich, which honours NO_COLOR.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from charrnn.cli.curve import encodable, loss_lines, render
from charrnn.cli.loadbar import CorpusBar
from charrnn.durations import format_duration
from charrnn.training.observer import TrainResult

PLAIN_EVERY_S = 5.0
SAMPLE_CHARS = 120
LN2 = math.log(2)


def fmt_loss(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def fmt_bpc(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value / LN2:.3f}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def is_interactive(stream: TextIO) -> bool:
    """A real terminal that can redraw a line (not a pipe, file or TERM=dumb)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"


def eta(elapsed: float, progress: float) -> str:
    if progress <= 0.001:
        return "?"
    return format_duration(max(0.0, elapsed * (1 - progress) / progress))


def one_line(text: str, width: int) -> str:
    """A sample squeezed onto one line: newlines and tabs shown as visible marks, cut to width."""
    flat = text.replace("\r", "").replace("\n", "⏎").replace("\t", "→")
    flat = "".join(ch if ch.isprintable() else "·" for ch in flat)
    return flat if len(flat) <= width else flat[: max(1, width - 1)] + "…"


class TrainReport:
    """Renders the trainer's events (see `charrnn.training.observer.TrainObserver`) on stderr.

    Use as a context manager so that a live display is closed (cursor restored) even when the
    run ends with an error or Ctrl-C.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.quiet = quiet
        self.stream: TextIO = stream or sys.stderr
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.console = Console(
            file=self.stream,
            force_terminal=self.interactive,
            highlight=False,
            emoji=False,
            markup=False,
        )
        self.ascii_only = not encodable(getattr(self.stream, "encoding", None))
        self.live: Live | None = None
        self.sampler: Callable[[int], str] | None = None
        self.last_plain: float | None = None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.evals = 0
        self.last_row: dict[str, Any] | None = None
        self.budget_steps: int | None = None
        self.budget_s: float | None = None
        self.train_points: list[tuple[float, float]] = []
        self.val_points: list[tuple[float, float]] = []
        self.corpus_bar = CorpusBar(self.stream, self.interactive)

    # -- plumbing -----------------------------------------------------------------------------

    def __enter__(self) -> TrainReport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display, leaving its last frame on screen."""
        self.corpus_bar.close()
        if self.live is not None:
            self.live.stop()
            self.live = None

    def print(self, text: Text | str) -> None:
        """One line above the live display (or a plain line).

        On a stream that cannot encode everything (LANG=C, a latin-1 log), characters it cannot
        hold are escaped rather than crashing a training run over a sample or a file name.
        """
        if self.ascii_only:
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            plain = text.plain if isinstance(text, Text) else text
            text = plain.encode(encoding, "backslashreplace").decode(encoding)
        self.console.print(text, soft_wrap=True)  # long paths stay whole (copy-pasteable); the terminal wraps

    def labelled(self, name: str, *parts: Text | str | tuple[str, str]) -> Text:
        """`name    text...` with the name in bold (the rest keeps its own styles)."""
        return Text.assemble((f"{name:<8}", "bold"), *parts)

    # -- events -------------------------------------------------------------------------------

    def on_corpus_progress(self, phase: str, done: int, total: int) -> None:
        if not self.quiet:
            self.corpus_bar(phase, done, total)

    def on_start(self, info: dict[str, Any]) -> None:
        sampler = info.get("sample")
        self.sampler = sampler if callable(sampler) else None
        self.budget_steps, self.budget_s = info.get("budget_steps"), info.get("budget_s")
        if self.quiet:
            return
        corpus, model = info["corpus"], info["model"]
        sources = corpus["sources"]
        names = sources[0] if len(sources) == 1 else f"{len(sources)} files ({sources[0]}, ...)"
        world = info.get("world_size", 1)
        ranks = f"{world} processes ({info.get('backend')}) x " if world > 1 else ""
        lines = [
            (
                "corpus",
                f"{names}: {corpus['chars']:,} chars, vocab {info['vocab_size']}, "
                f"train {corpus['train_chars']:,} / val {corpus['val_chars']:,}",
            ),
            (
                "model",
                f"{model['num_layers']}x{model['hidden_size']} {model['cell'].upper()}, embed {model['embed_size']}, "
                f"dropout {model['dropout']:g}, {info['parameters']:,} parameters",
            ),
            (
                "train",
                f"{info['device']} {info['dtype']}{f' ({note})' if (note := info.get('dtype_note')) else ''}, "
                f"{ranks}{plural(info['threads'], 'thread')}, "
                f"batch {info['batch_size']} x {info['seq_len']} chars, "
                f"{plural(info['stream_groups'], 'stream group')}, lr {info['lr']:g} ({info['decay']} decay)",
            ),
            ("budget", f"{info['budget']}, validate every {info['eval_every']}"),
            *([("speed", str(info["speed"]))] if info.get("speed") else []),
            *([("plan", str(info["plan"]))] if info.get("plan") else []),
            ("run", str(info["run_dir"])),
        ]
        resumed_from = info.get("resumed_from")
        if resumed_from:
            lines.append(("resume", f"from {resumed_from} at step {info.get('resumed_step')}"))
        for name, text in lines:
            self.print(self.labelled(name, text))

    def on_log(self, row: dict[str, Any]) -> None:
        loss = row.get("train_loss")
        if loss is not None and math.isfinite(loss):
            self.train_points.append((float(row["step"]), float(loss)))
        if self.quiet:
            return
        if self.interactive:
            self.last_row = row
            self.show_live(row)
            return
        elapsed = float(row["elapsed_s"])
        if self.last_plain is None or elapsed - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = elapsed
            self.print(self.plain_line(row))

    def plain_line(self, row: dict[str, Any]) -> str:
        loss = row.get("train_loss")
        return (
            f"step {row['step']:>6}  epoch {row['epoch']:.2f}  loss {fmt_loss(loss)} ({fmt_bpc(loss)} bpc)  "
            f"val {fmt_loss(self.last_val)}  lr {row['lr']:.2e}  {row['chars_per_s']:,.0f} chars/s  "
            f"{format_duration(row['elapsed_s'])} ({row['progress']:.0%}, ETA {eta(row['elapsed_s'], row['progress'])})"
        )

    def show_live(self, row: dict[str, Any]) -> None:
        progress = float(row.get("progress", 0.0))
        loss = row.get("train_loss")
        head = Table.grid(padding=(0, 1))
        steps = f"step {row['step']:,}" + (f"/{self.budget_steps:,}" if self.budget_steps else "")
        elapsed = format_duration(row["elapsed_s"]) + (f"/{format_duration(self.budget_s)}" if self.budget_s else "")
        head.add_row(
            ProgressBar(total=1.0, completed=progress, width=30),
            Text(f"{progress:>4.0%}", style="bold"),
            Text(f"{steps}  epoch {row['epoch']:.2f}"),
            Text(f"{elapsed}, ETA {eta(row['elapsed_s'], progress)}", style="dim"),
        )
        stats = Text("  loss ")
        stats.append(fmt_loss(loss), style="bold cyan")
        stats.append(f" ({fmt_bpc(loss)} bpc)  val ")
        stats.append(fmt_loss(self.last_val), style="bold magenta")
        stats.append(f"  lr {row['lr']:.2e}  {row['chars_per_s']:,.0f} chars/s")
        frame = Group(head, stats)
        if self.live is None:
            self.live = Live(
                frame, console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
            )
            self.live.start(refresh=True)
        else:
            self.live.update(frame, refresh=True)

    def on_eval(self, row: dict[str, Any]) -> None:
        val = row.get("val_loss")
        self.last_val = val
        self.evals += 1
        finite = val is not None and math.isfinite(val)
        if finite:
            self.val_points.append((float(row["step"]), float(val)))  # type: ignore[arg-type]
        if row.get("best") and finite:
            self.best_val, self.best_step = val, int(row["step"])
        if self.quiet:
            return
        line = Text(f"val     step {row['step']:>6}  loss {fmt_loss(val)} nats/char  {fmt_bpc(val)} bits/char")
        if row.get("best") and finite:
            line.append("  (best)", style="green")
        self.print(line)
        if self.sampler is not None and finite:
            width = max(20, self.console.width - 10) if self.interactive else SAMPLE_CHARS
            try:
                text = one_line(self.sampler(min(width, SAMPLE_CHARS)), width)
            except Exception as exc:  # a preview must never end a training run
                text = f"(no sample: {type(exc).__name__})"
            self.print(Text.assemble(("sample  ", "dim"), (text, "italic")))
        if self.live is not None and self.last_row is not None:
            self.show_live(self.last_row)  # the live frame shows the new validation loss at once

    def on_warning(self, message: str) -> None:
        self.print(Text(f"charrnn: warning: {message}", style="yellow"))

    def on_end(self, result: TrainResult) -> None:
        self.close()
        best = result.best_val_loss
        self.print(
            self.labelled(
                "done",
                f"{result.steps:,} steps, {result.epochs:.2f} epochs in {format_duration(result.elapsed_s)} "
                f"({result.chars_per_s:,.0f} chars/s, stopped by {result.stop_reason})",
            )
        )
        if result.stop_note:
            self.print(self.labelled("stop", result.stop_note))
        at = f" at step {self.best_step}" if self.best_step is not None else ""
        if best is not None:
            quality = f"val {fmt_loss(best)} nats/char, {fmt_bpc(best)} bits/char{at}"
        elif self.evals:
            quality = "no finite validation loss (the run diverged: try a lower --lr or --grad-clip 1)"
        else:
            quality = "no validation"
        self.print(self.labelled("best", quality + " -> ", (str(result.best_path), "bold")))
        if not self.quiet and (self.train_points or self.val_points):
            self.print("")
            for text in self.curve():
                self.print(text)
            self.print("")
        if not self.quiet:
            self.print(self.labelled("next", (f"charrnn sample -c {result.run_dir}", "dim")))

    def curve(self) -> list[Text]:
        """The run's loss curve (train and validation), sized to the terminal."""
        train = ([p[0] for p in self.train_points], [p[1] for p in self.train_points])
        val = ([p[0] for p in self.val_points], [p[1] for p in self.val_points])
        width = min(self.console.width, 100) if self.interactive else 80
        return render(loss_lines([("run", train, val)]), width=width, height=10, ascii_only=self.ascii_only)
