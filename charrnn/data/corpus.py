"""Read and validate training text, encode it once into a compact id array, split train/val.

A corpus is one or more files (a directory counts as all its non-hidden files), joined into one
text with `separator` between documents. Encoding streams the files in blocks, twice: pass 1
validates them and counts characters (the vocab), pass 2 maps them to ids straight into the id
cache (charrnn.data.idcache), so neither the text nor its ids ever sit in memory whole, and a second
run on the same bytes just memory-maps the ids.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.choices import Errors
from charrnn.data import idcache
from charrnn.data.textstream import (
    BLOCK_SIZE,
    Fingerprint,
    OnBytes,
    UndecodableError,
    binary_error,
    count_points,
    fingerprint,
    iter_text,
    spool,
    spool_failed,
)
from charrnn.errors import CorpusError, InputError
from charrnn.files import display_path, file_kind, utf8_name, why_unreadable
from charrnn.vocab import UNICODE_SIZE, Vocab, codepoints

ERROR_POLICIES = tuple(policy.value for policy in Errors)
SEPARATOR = "\n\n"  # a blank line between documents
STDIN = "-"
Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes total); phases: hash, scan, encode


@dataclass(frozen=True)
class Corpus:
    """A whole corpus as ids (uint8/16/32, the smallest that fits its vocab).

    `ids` is read-only, usually a memory map of the id cache. `digest` is the sha256 of the raw
    bytes of the files used, in order (for one file: of that file), which `--resume` compares.
    """

    ids: np.ndarray
    vocab: Vocab
    sources: tuple[str, ...]
    digest: str
    separator: str = SEPARATOR
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason) of files left out as not text
    passed_over: tuple[Passed, ...] = ()  # (path, why) of directory entries that are not regular files
    cached: bool = False  # the ids came from the cache, not from encoding now

    @property
    def num_chars(self) -> int:
        return int(self.ids.size)


Passed = tuple[str, str]  # (path, why): an entry of a corpus directory that is not a file to read


def walk(root: Path) -> tuple[list[str], list[Passed]]:
    """Every regular file under `root`, recursively, sorted, without hidden files or directories;
    and what else was there, with why it was passed over, so the user hears of it (not silently).

    Symlinks to files are followed; symlinks to directories are not (a loop would never end)."""
    found: list[tuple[str, ...]] = []
    passed: list[tuple[tuple[str, ...], str]] = []

    def unlisted(exc: OSError) -> None:  # os.walk's report of a directory it cannot list
        passed.append((Path(exc.filename).parts, f"cannot be listed ({exc.strerror or exc})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in [d for d in dirnames if os.path.islink(base / d)]:
            passed.append(((base / name).parts, "is a symlink to a directory (not followed)"))
        for name in filenames:
            if not name.startswith("."):
                path = base / name
                why = passed_over(path)
                if why is None:
                    found.append(path.parts)
                else:
                    passed.append((path.parts, why))
    return [str(Path(*parts)) for parts in sorted(found)], [
        (display_path(Path(*parts)), why) for parts, why in sorted(passed)
    ]


def passed_over(path: Path) -> str | None:
    """Why a directory entry is not read as part of the corpus, or None for a regular file."""
    if not utf8_name(path):
        return "its name is not valid UTF-8 (rename it to use it)"
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return why_unreadable(exc, path)
    return None if stat.S_ISREG(mode) else f"is {file_kind(mode)}, not a regular file"


def expand_sources(paths: Sequence[str]) -> tuple[list[str], list[Passed]]:
    """Files as given; directories become all their files (see `walk`); `-` is stdin.

    Also what the directories held besides (see `walk`). A path that cannot be used says why: a
    symlink loop is not "not found". A name that is not UTF-8 is refused: corpus paths are
    recorded as text (the id cache, the run's config and checkpoints)."""
    if not paths:
        raise CorpusError("no corpus given; pass one or more text files, a directory, or - for stdin")
    files: list[str] = []
    passed: list[Passed] = []
    for raw in paths:
        if raw == STDIN:
            files.append(raw)
            continue
        if not utf8_name(raw):
            raise CorpusError(f"{display_path(raw)}: the name is not valid UTF-8; rename it, or pipe the text to -")
        try:
            mode = os.stat(raw).st_mode
        except OSError as exc:
            why = why_unreadable(exc, raw)
            if why == "not found":
                raise CorpusError(f"{raw}: corpus file not found; check the path") from None
            raise CorpusError(f"{raw}: {why}; point at a text file instead") from None
        if stat.S_ISDIR(mode):
            found, other = walk(Path(raw))
            if not found:
                more = f" and {len(other) - 1} more" if len(other) > 1 else ""
                seen = f" (passed over: {other[0][0]} {other[0][1]}{more})" if other else ""
                raise CorpusError(f"{raw}: directory holds no regular files{seen}; point at a text file instead")
            files.extend(found)
            passed.extend(other)
        else:
            files.append(raw)  # a FIFO or a device named directly is refused when opened, naming what it is
    return files, passed


@contextmanager
def readable_paths(sources: Sequence[str]) -> Iterator[list[str]]:
    """Paths to read each source from: stdin is spooled to a temporary file (read more than once)."""
    if STDIN not in sources:
        yield list(sources)
        return
    try:
        temporary = tempfile.TemporaryDirectory(prefix="charrnn-stdin-")
    except OSError as exc:
        raise spool_failed(Path(tempfile.gettempdir()), 0, exc) from None
    with temporary as tmp:
        spooled = Path(tmp) / "stdin"
        spool(sys.stdin.buffer, spooled)
        yield [str(spooled) if s == STDIN else s for s in sources]


class Meter:
    """Turns per-block byte counts into `progress(phase, done, total)` calls."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total

    def phase(self, name: str) -> OnBytes:
        done = 0
        if self.progress is not None:
            self.progress(name, 0, self.total)

        def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            if self.progress is not None:
                self.progress(name, min(done, self.total), self.total)

        return on_bytes


@dataclass(frozen=True)
class Scan:
    """Pass 1 over the files: character counts, characters per file, files that are not text."""

    counts: np.ndarray  # occurrences of each code point, over the files kept
    chars: tuple[int, ...]  # characters in each file (0 for a skipped one)
    skipped: dict[int, UndecodableError]
    digest: str  # sha256 of the raw bytes of the files kept, in order


def scan(
    sources: Sequence[str],
    paths: Sequence[str],
    prints: Sequence[Fingerprint],
    errors: str,
    block_size: int,
    meter: Meter,
) -> Scan:
    """Decode every file once: validate, count code points, hash the bytes of the files kept."""
    counts = np.zeros(UNICODE_SIZE, dtype=np.int64)
    chars: list[int] = []
    skipped: dict[int, UndecodableError] = {}
    digest = hashlib.sha256()
    on_bytes = meter.phase("scan")
    for index, (source, path, printed) in enumerate(zip(sources, paths, prints, strict=True)):
        chars.append(0)
        if printed.binary:
            skipped[index] = binary_error(source, printed.nul_at or 0)
            on_bytes(printed.size)
            continue
        check, with_file = hashlib.sha256(), digest.copy()

        def on_raw(data: bytes, check: Any = check, with_file: Any = with_file) -> None:
            check.update(data)
            with_file.update(data)

        try:
            own, chars[-1] = count_points(iter_text(path, source, errors, block_size, on_bytes, on_raw))
        except UndecodableError as exc:
            skipped[index] = exc
            continue
        unchanged(source, printed, check)
        counts[: own.size] += own
        digest = with_file
    return Scan(counts=counts, chars=tuple(chars), skipped=skipped, digest=digest.hexdigest())


def unchanged(source: str, printed: Fingerprint, seen: Any) -> None:
    """CorpusError if a file's bytes differ from its fingerprint: it was edited while being read."""
    if seen.hexdigest() != printed.sha256:
        raise CorpusError(f"{source}: changed while it was being read; run again once it is stable")


def where(sources: Sequence[str]) -> str:
    """How error messages name the corpus: the file, or how many files."""
    return sources[0] if len(sources) == 1 else f"{len(sources)} files"


def check_usable(sources: Sequence[str], found: Scan) -> list[int]:
    """Indices of the documents to join (non-empty text files); CorpusError if there are none."""
    if found.skipped and len(sources) == 1:
        raise found.skipped[0]  # the one file the user named is not text: say exactly why
    kept = [i for i in range(len(sources)) if i not in found.skipped]
    if not kept:
        reasons = sorted({exc.reason.split(" at byte")[0] for exc in found.skipped.values()})
        raise CorpusError(
            f"{where(sources)}: every file was skipped as not text ({', '.join(reasons)}); "
            "point at UTF-8 text files" + (" or pass --errors replace" if "invalid UTF-8" in reasons else "")
        )
    documents = [i for i in kept if found.chars[i] > 0]
    if not documents:
        raise CorpusError(f"{where([sources[i] for i in kept])}: corpus is empty; give a file with some text in it")
    return documents


def choose_vocab(counts: np.ndarray, sources: Sequence[str], vocab: Vocab | None) -> Vocab:
    """The corpus's own vocab, or the given one (fine-tuning) if it covers every character."""
    if vocab is None:
        return Vocab.from_counts(counts)
    try:
        vocab.check_covers(np.flatnonzero(counts))
    except InputError as exc:
        raise CorpusError(f"{where(sources)}: {exc}") from None
    return vocab


def load_corpus(
    paths: Sequence[str],
    errors: str = "strict",
    vocab: Vocab | None = None,
    separator: str = SEPARATOR,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    block_size: int = BLOCK_SIZE,
) -> Corpus:
    """Read and encode a corpus, or map its ids from the cache when these bytes were encoded before.

    With `vocab` (fine-tuning), every character must be in it. In a corpus of several files,
    files that are not text are skipped and listed in `Corpus.skipped`; a single named file
    that is not text is an error. `cache_dir` holds the id cache (default <cache>/ids).
    """
    if errors not in ERROR_POLICIES:
        raise CorpusError(f"unknown UTF-8 error policy {errors!r}; use one of {', '.join(ERROR_POLICIES)}")
    sources, passed = expand_sources(paths)
    with readable_paths(sources) as files:
        directory = idcache.ids_dir(cache_dir)
        corpus = encode_corpus(sources, files, errors, vocab, separator, directory, progress, block_size)
    return replace(corpus, passed_over=tuple(passed))


def encode_corpus(
    sources: Sequence[str],
    files: Sequence[str],
    errors: str,
    vocab: Vocab | None,
    separator: str,
    directory: Path,
    progress: Progress | None,
    block_size: int,
) -> Corpus:
    meter = Meter(progress, sum(file_size(f) for f in files))
    on_hash = meter.phase("hash")
    prints = [fingerprint(f, s, block_size, on_hash) for s, f in zip(sources, files, strict=True)]
    key = idcache.cache_key(prints, errors, separator, vocab)
    hit = idcache.lookup(directory, key)
    if hit is not None:
        ids, meta = hit
        skipped = {int(i): reason for i, reason in meta["skipped"]}
        return Corpus(
            ids=ids,
            vocab=vocab or Vocab(meta["vocab"]),
            sources=tuple(s for i, s in enumerate(sources) if i not in skipped),
            digest=meta["digest"],
            separator=separator,
            skipped=tuple((sources[i], reason) for i, reason in sorted(skipped.items())),
            cached=True,
        )
    found = scan(sources, files, prints, errors, block_size, meter)
    documents = check_usable(sources, found)
    counts = found.counts
    joins = len(documents) - 1
    if joins and separator:
        counts = counts + np.bincount(codepoints(separator), minlength=UNICODE_SIZE) * joins
    kept = [s for i, s in enumerate(sources) if i not in found.skipped]
    vocab = choose_vocab(counts, kept, vocab)
    size = sum(found.chars) + len(separator) * joins
    table = vocab.id_table()

    def fill(sink: idcache.Sink) -> None:
        """Pass 2: each document's ids block by block, the separator's between documents."""
        on_bytes = meter.phase("encode")
        between = table[codepoints(separator)]
        for n, index in enumerate(documents):
            check, written = hashlib.sha256(), 0
            for chunk in iter_text(files[index], sources[index], errors, block_size, on_bytes, check.update):
                ids = table[codepoints(chunk)]
                written += ids.size
                sink(ids)
            unchanged(sources[index], prints[index], check)
            if written != found.chars[index]:
                raise CorpusError(f"{sources[index]}: changed while it was being read; run again once it is stable")
            if n < joins and between.size:
                sink(between)

    skipped_at = sorted((i, exc.reason) for i, exc in found.skipped.items())
    meta = {
        "digest": found.digest,
        "vocab": vocab.chars,
        "separator": separator,
        "errors": errors,
        "sources": list(sources),
        "sizes": [p.size for p in prints],
        "skipped": [[i, reason] for i, reason in skipped_at],
    }
    try:
        ids = idcache.store(directory, key, meta, size, vocab.id_dtype, fill)
    except OSError:  # unwritable or full cache: build the same ids in memory instead
        ids = idcache.in_memory(size, vocab.id_dtype, fill)
    return Corpus(
        ids=ids,
        vocab=vocab,
        sources=tuple(kept),
        digest=found.digest,
        separator=separator,
        skipped=tuple((sources[i], reason) for i, reason in skipped_at),
    )


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # reading it will report the problem


def skip_warnings(skipped: Sequence[tuple[str, str]], passed_over: Sequence[Passed] = (), limit: int = 5) -> list[str]:
    """One warning per file left out (not text, or not a regular file), or a summary line when there are many."""
    left = [(path, f"not text, {reason}") for path, reason in skipped] + list(passed_over)
    if len(left) <= limit:
        return [f"skipped {path}: {why}" for path, why in left]
    shown = ", ".join(f"{path} ({why})" for path, why in left[:3])
    return [f"skipped {len(left)} files: {shown} and {len(left) - 3} more"]


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Train = the first (1 - val_frac) of the text, validation = the last val_frac, contiguous."""
    if not 0.0 <= val_frac < 1.0:
        raise CorpusError(f"--val-frac must be in [0, 1), got {val_frac}")
    n_val = round(ids.size * val_frac)
    return ids[: ids.size - n_val], ids[ids.size - n_val :]
