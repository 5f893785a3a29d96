"""Read and validate training text, encode it once into a compact id array, split train/val."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import CorpusError, InputError
from charrnn.vocab import Vocab, codepoints

BINARY_SNIFF_BYTES = 65536
TEXT_SUFFIXES = (".txt",)
ERROR_POLICIES = ("strict", "replace", "ignore")


@dataclass(frozen=True)
class Corpus:
    """A whole corpus as ids (uint8/16/32, the smallest that fits its vocab)."""

    ids: np.ndarray
    vocab: Vocab
    sources: tuple[str, ...]
    digest: str

    @property
    def num_chars(self) -> int:
        return int(self.ids.size)


def expand_sources(paths: Sequence[str]) -> list[str]:
    """Files as given; directories become their `.txt` files (recursively, sorted); `-` is stdin."""
    if not paths:
        raise CorpusError("no corpus given; pass one or more text files, a directory, or - for stdin")
    files: list[str] = []
    for raw in paths:
        if raw == "-":
            files.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise CorpusError(f"{raw}: directory holds no .txt files; point at a text file instead")
            files.extend(found)
        elif not path.exists():
            raise CorpusError(f"{raw}: corpus file not found; check the path")
        else:
            files.append(raw)
    return files


def read_bytes(source: str) -> bytes:
    """Raw bytes of a file or of stdin, with filesystem failures as CorpusError."""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except IsADirectoryError:
        raise CorpusError(f"{source}: is a directory, not a text file") from None
    except PermissionError:
        raise CorpusError(f"{source}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise CorpusError(f"{source}: cannot read ({exc.strerror or exc})") from None


def decode_text(data: bytes, source: str, errors: str = "strict") -> str:
    """UTF-8 text of `data`, BOM stripped; binary data and bad bytes give a CorpusError."""
    if errors not in ERROR_POLICIES:
        raise CorpusError(f"unknown UTF-8 error policy {errors!r}; use one of {', '.join(ERROR_POLICIES)}")
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise CorpusError(f"{source}: looks like a binary file (NUL bytes); give a UTF-8 text file")
    try:
        text = data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{source}: invalid UTF-8 at byte {exc.start} (0x{data[exc.start]:02x}); "
            "convert the file to UTF-8 or pass --errors replace"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(paths: Sequence[str], errors: str = "strict") -> tuple[str, tuple[str, ...], str]:
    """(text, sources, sha256 of the raw bytes). Several documents are joined so each ends in a newline."""
    sources = expand_sources(paths)
    digest = hashlib.sha256()
    parts: list[str] = []
    for source in sources:
        data = read_bytes(source)
        digest.update(data)
        text = decode_text(data, source, errors)
        if len(sources) > 1 and text and not text.endswith("\n"):
            text += "\n"
        parts.append(text)
    text = "".join(parts)
    if not text:
        where = sources[0] if len(sources) == 1 else f"{len(sources)} files"
        raise CorpusError(f"{where}: corpus is empty; give a file with some text in it")
    return text, tuple(sources), digest.hexdigest()


def load_corpus(paths: Sequence[str], errors: str = "strict", vocab: Vocab | None = None) -> Corpus:
    """Read and encode a corpus. With `vocab` (fine-tuning), every character must be in it."""
    text, sources, digest = read_text(paths, errors)
    points = codepoints(text)
    del text
    if vocab is None:
        vocab = Vocab.from_codepoints(points)
    try:
        ids = vocab.encode_points(points)
    except InputError as exc:
        raise CorpusError(f"{', '.join(sources)}: {exc}") from None
    return Corpus(ids=ids, vocab=vocab, sources=sources, digest=digest)


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Train = the first (1 - val_frac) of the text, validation = the last val_frac, contiguous."""
    if not 0.0 <= val_frac < 1.0:
        raise CorpusError(f"--val-frac must be in [0, 1), got {val_frac}")
    n_val = round(ids.size * val_frac)
    return ids[: ids.size - n_val], ids[ids.size - n_val :]
