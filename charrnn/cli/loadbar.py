"""Progress on stderr while a big corpus is read and encoded (small ones load too fast to need it),
and during a long pass over a text (`eval --dynamic`).

A terminal gets a tqdm bar per phase (removed when the phase ends); a log file gets one plain
line per corpus phase and nothing for a pass, never a carriage return.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

MIN_BYTES = 32 << 20
LABELS = {"hash": "reading", "scan": "checking", "encode": "encoding"}


class CorpusBar:
    """A `progress(phase, done, total)` callback for `load_corpus`."""

    def __init__(self, stream: TextIO | None = None, interactive: bool = True, min_bytes: int = MIN_BYTES) -> None:
        self.stream: TextIO = stream or sys.stderr
        self.interactive = interactive
        self.min_bytes = min_bytes
        self.phase: str | None = None
        self.bar: tqdm | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < self.min_bytes:
            return
        label = f"corpus {LABELS.get(phase, phase)}"
        if phase != self.phase:
            self.close()
            self.phase = phase
            if self.interactive:
                self.bar = tqdm(
                    total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=self.stream, leave=False
                )
            else:
                print(f"charrnn: {label} {total / 2**20:,.0f} MiB", file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PassBar:
    """A `progress(done, total)` callback in characters, as a bar on a terminal (nothing elsewhere)."""

    def __init__(self, label: str, total: int, interactive: bool, stream: TextIO | None = None) -> None:
        self.bar: tqdm | None = None
        if interactive:
            self.bar = tqdm(
                total=total, desc=label, unit="char", unit_scale=True, file=stream or sys.stderr, leave=False
            )

    def __enter__(self) -> PassBar:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.close()
