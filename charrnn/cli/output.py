"""Text in and out of commands: primes from files or stdin, samples as text or JSONL, stdout that
streams as UTF-8 and ends quietly when the reader goes away (`| head`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import typer

from charrnn.cli.common import EXIT_OK, silence
from charrnn.files import read_utf8

if TYPE_CHECKING:
    from charrnn.sampling.generate import Piece


def read_prime(path: str) -> str:
    """The prime from a UTF-8 file or stdin (`-`), as given (a trailing newline is kept)."""
    return read_utf8(path, "prime file")


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


def jsonl_output(head: str, pieces: Iterator[Piece]) -> Iterator[str]:
    """One JSON object per finished sample: {"text", "seed", "index", "logprob", "chars", "finish_reason"}
    (logprob: the model's total log-probability of the generated text, natural log; seed null for beam search)."""
    parts: list[str] = [head]
    for piece in pieces:
        parts.append(piece.text)
        if piece.done:
            record = {"text": "".join(parts), "seed": piece.seed, "index": piece.index, "logprob": piece.logprob,
                      "chars": piece.chars, "finish_reason": piece.reason}  # fmt: skip
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
        silence(sys.stdout)
        raise typer.Exit(EXIT_OK) from None
