"""Encoded corpora on disk, keyed by content: a second run on the same text maps its ids instead of re-encoding.

An entry is `<key>.npy` (the ids, loadable with `np.load(mmap_mode="r")`) plus `<key>.json` (vocab,
sizes, sources, skipped files). Both are written to a temporary file in the same directory,
fsynced and renamed into place, ids first: a killed run leaves either no sidecar (a miss) or a
complete entry. An entry whose sizes do not match its sidecar is treated as missing and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.data.cachedir import cache_dir
from charrnn.data.textstream import Fingerprint
from charrnn.vocab import Vocab

STALE_TEMP_S = 3600.0


def current_umask() -> int:
    """The process umask (it can only be read by setting it, so this runs once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# What open() would give a new file: mkstemp's 0o600 would hide a shared CHARRNN_CACHE_DIR's
# entries from its other users.
FILE_MODE = 0o666 & ~current_umask()
FORMAT = 1  # bump when the encoding of ids changes, so old entries stop matching
Sink = Callable[[np.ndarray], None]  # receives consecutive blocks of ids


def ids_dir(directory: str | Path | None = None) -> Path:
    """Where entries live: `directory` if given, else <cache dir>/ids (see charrnn.data.cachedir)."""
    return Path(directory) if directory is not None else cache_dir() / "ids"


def cache_key(prints: Sequence[Fingerprint], errors: str, separator: str, vocab: Vocab | None) -> str:
    """sha256 over everything that decides the ids: each file's bytes (by size and hash) and the options."""
    recipe = {
        "format": FORMAT,
        "errors": errors,
        "separator": separator,
        "vocab": None if vocab is None else vocab.chars,
        "files": [[p.size, p.sha256] for p in prints],
    }
    return hashlib.sha256(json.dumps(recipe, ensure_ascii=True).encode()).hexdigest()


def entry_paths(directory: Path, key: str) -> tuple[Path, Path]:
    return directory / f"{key}.npy", directory / f"{key}.json"


def lookup(directory: Path, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    """(read-only memory-mapped ids, sidecar) of a complete entry, else None (missing or damaged)."""
    ids_path, meta_path = entry_paths(directory, key)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        if not (isinstance(meta["digest"], str) and isinstance(meta["vocab"], str) and valid_skips(meta["skipped"])):
            return None
        if ids_path.stat().st_size != meta["npy_bytes"]:
            return None
        ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
        if ids.shape != (meta["chars"],) or ids.dtype != np.dtype(meta["dtype"]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ids, meta


def valid_skips(skipped: Any) -> bool:
    return isinstance(skipped, list) and all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str)
        for item in skipped
    )


def remove_stale_temps(directory: Path, older_than_s: float = STALE_TEMP_S) -> None:
    """Delete temporary files left by runs killed mid-write (old enough not to be someone's current write)."""
    cutoff = time.time() - older_than_s
    for leftover in directory.glob(".*.tmp"):
        with suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def store(
    directory: Path, key: str, meta: dict[str, Any], size: int, dtype: np.dtype, fill: Callable[[Sink], None]
) -> np.ndarray:
    """Write an entry atomically (`fill` streams the ids) and return its ids memory-mapped, read-only.

    OSError means the cache could not be written (read-only, full disk); nothing half-written is left.
    """
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory)
    ids_path, meta_path = entry_paths(directory, key)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (size,)}

    def write_ids(out: Any) -> None:
        np.lib.format.write_array_header_1_0(out, header)
        fill(lambda block: out.write(np.ascontiguousarray(block, dtype=dtype).tobytes()))

    npy_bytes = atomic_stream(ids_path, write_ids)
    sidecar = {**meta, "format": FORMAT, "key": key, "chars": size, "dtype": dtype.str, "npy_bytes": npy_bytes}
    text = json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n"
    atomic_stream(meta_path, lambda out: out.write(text.encode("utf-8")))
    found = lookup(directory, key)
    if found is None:  # written but not readable back: treat like an unwritable cache
        raise OSError(f"{ids_path}: cache entry unreadable after writing")
    return found[0]


def atomic_stream(target: Path, write: Callable[[Any], None]) -> int:
    """Write via a temporary file in the same directory, fsync, rename; returns the bytes written."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
            written = out.tell()
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return written


def in_memory(size: int, dtype: np.dtype, fill: Callable[[Sink], None]) -> np.ndarray:
    """The same ids built in RAM, for when the cache cannot be written; read-only like a cache hit."""
    ids = np.empty(size, dtype=dtype)
    pos = 0

    def sink(block: np.ndarray) -> None:
        nonlocal pos
        ids[pos : pos + block.size] = block
        pos += block.size

    fill(sink)
    ids.flags.writeable = False
    return ids
