"""Read corpus files in fixed-size blocks: fingerprint them, decode UTF-8 incrementally, count characters.

Nothing here holds a whole file: a 1 GB corpus is read BLOCK_SIZE bytes at a time, and each block
is turned into code points with numpy (no Python loop per character).
"""

from __future__ import annotations

import codecs
import errno
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charrnn.errors import CorpusError, WriteError
from charrnn.files import NotARegularFile, open_regular
from charrnn.vocab import codepoints

BLOCK_SIZE = 8 << 20  # bytes per read: big enough for numpy to pay off, small enough for memory
NUL = b"\x00"  # never in text: one anywhere marks a file binary
BOM = "\ufeff"

OnBytes = Callable[[int], None]  # told how many more bytes were read


def no_progress(count: int) -> None:
    pass


@dataclass(frozen=True)
class Fingerprint:
    """What one read of a file's raw bytes tells: its size, sha256, and where its first NUL byte is."""

    size: int
    sha256: str
    nul_at: int | None  # offset of the first NUL byte (the file is binary), or None

    @property
    def binary(self) -> bool:
        return self.nul_at is not None


class UndecodableError(CorpusError):
    """A file that is not text: binary, or invalid UTF-8 under the strict policy.

    The message says what to do (for a file the user named); `reason` is the short form used
    when the file is only skipped from a multi-file corpus.
    """

    def __init__(self, source: str, detail: str, reason: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.reason = reason


def binary_error(source: str, offset: int) -> UndecodableError:
    detail = f"looks like a binary file (a NUL byte at byte {offset}); give a UTF-8 text file"
    return UndecodableError(source, detail, "binary (NUL bytes)")


@contextmanager
def open_source(path: str, source: str) -> Iterator[BinaryIO]:
    """The file opened for reading, with filesystem failures as CorpusError naming `source`."""
    try:
        handle = open_regular(path)
    except IsADirectoryError:
        raise CorpusError(f"{source}: is a directory, not a text file") from None
    except NotARegularFile as exc:
        raise CorpusError(
            f"{source}: {exc.strerror}, not a text file; save the text to a file, or pipe it to -"
        ) from None
    except PermissionError:
        raise CorpusError(f"{source}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise CorpusError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        yield handle
    except OSError as exc:
        raise CorpusError(f"{source}: cannot read ({exc.strerror or exc})") from None
    finally:
        handle.close()


def read_blocks(path: str, source: str, block_size: int, on_bytes: OnBytes) -> Iterator[bytes]:
    with open_source(path, source) as handle:
        while data := handle.read(block_size):
            on_bytes(len(data))
            yield data


def fingerprint(path: str, source: str, block_size: int = BLOCK_SIZE, on_bytes: OnBytes = no_progress) -> Fingerprint:
    """Size, sha256 and the first NUL byte of a file, in one pass over all of its bytes."""
    digest = hashlib.sha256()
    size = 0
    nul_at: int | None = None
    for data in read_blocks(path, source, block_size, on_bytes):
        if nul_at is None and (at := data.find(NUL)) >= 0:
            nul_at = size + at
        digest.update(data)
        size += len(data)
    return Fingerprint(size=size, sha256=digest.hexdigest(), nul_at=nul_at)


def iter_text(
    path: str,
    source: str,
    errors: str = "strict",
    block_size: int = BLOCK_SIZE,
    on_bytes: OnBytes = no_progress,
    on_raw: Callable[[bytes], None] | None = None,
) -> Iterator[str]:
    """The file's text in chunks, BOM stripped; invalid UTF-8 (strict) raises UndecodableError.

    The incremental decoder carries a character split across two blocks over to the next one,
    so chunks never cut a character in half. `on_raw` sees every raw block (for hashing).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    offset = 0  # bytes handed to the decoder before the current block
    at_start = True
    blocks = read_blocks(path, source, block_size, on_bytes)
    while True:
        data = next(blocks, b"")
        if on_raw is not None and data:
            on_raw(data)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            pending = len(exc.object) - len(data)  # bytes the decoder held back from the last block
            where = f"invalid UTF-8 at byte {offset - pending + exc.start} (0x{exc.object[exc.start]:02x})"
            hint = "convert the file to UTF-8 or pass --errors replace"
            raise UndecodableError(source, f"{where}; {hint}", where) from None
        offset += len(data)
        if at_start and text:
            at_start = False
            text = text.removeprefix(BOM)
        if text:
            yield text
        if not data:
            return


def count_points(chunks: Iterator[str]) -> tuple[np.ndarray, int]:
    """Occurrences of each code point (indexed by code point, only as long as the highest one seen)
    and the number of chars: a small file costs a small array, not one slot per Unicode code point."""
    counts = np.zeros(0, dtype=np.int64)
    total = 0
    for chunk in chunks:
        points = codepoints(chunk)
        found = np.bincount(points)
        if found.size > counts.size:
            found[: counts.size] += counts
            counts = found
        else:
            counts[: found.size] += found
        total += points.size
    return counts, total


def spool(stream: BinaryIO, target: Path, block_size: int = BLOCK_SIZE) -> None:
    """Copy a stream (stdin) to `target` block by block, so it can be read more than once.

    Each block is checked as it arrives: a NUL byte (binary data, `- < /dev/zero`) stops the copy
    there, rather than after the stream has filled the disk. A copy that cannot be written says so.
    """
    read = getattr(stream, "read1", stream.read)  # what a pipe has now: a binary stream is refused early
    copied = 0
    try:
        with open(target, "wb") as out:
            while data := read_stdin(read, block_size):
                if (at := data.find(NUL)) >= 0:
                    raise binary_error("stdin", copied + at)
                out.write(data)
                copied += len(data)
    except OSError as exc:
        raise spool_failed(target, copied, exc) from None


def read_stdin(read: Callable[[int], bytes], size: int) -> bytes:
    try:
        return read(size)
    except OSError as exc:
        raise CorpusError(f"stdin: cannot read ({exc.strerror or exc})") from None


SPOOL_HINTS = {
    errno.ENOSPC: "free space there or set TMPDIR to a bigger disk",
    errno.EDQUOT: "free space there or set TMPDIR to a bigger disk",
    errno.EFBIG: "the file-size limit (ulimit -f) is smaller than the text; raise it",
}


def spool_failed(target: Path, copied: int, exc: OSError) -> WriteError:
    """Stdin is copied to a temporary file before training: say which file failed, and why."""
    hint = SPOOL_HINTS.get(exc.errno or 0, "set TMPDIR to a writable directory")
    return WriteError(
        f"stdin: cannot keep a temporary copy in {target} after {copied:,} bytes ({exc.strerror or exc}); "
        f"{hint}, or save the text to a file and pass its path"
    )
