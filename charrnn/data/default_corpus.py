"""The embedded default corpus: this Python's own standard library source, built on the spot.

Nothing third-party ships with charrnn; every machine that runs it has ~12 MB of Python
source next to the interpreter, which makes the classic "generate code" demo work offline.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from charrnn.data.cachedir import cache_dir
from charrnn.errors import CorpusError
from charrnn.files import write_output

NAME = "python-stdlib"
SKIP_PARTS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's .py files, without tests and installed packages, in a stable order."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    return [p for p in sorted(root.rglob("*.py")) if p.is_file() and not SKIP_PARTS & set(p.relative_to(root).parts)]


def default_corpus_path() -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return cache_dir() / f"{NAME}-{version}.txt"


def build_default_corpus(path: Path | None = None, root: Path | None = None) -> Path:
    """Write the corpus once (atomically, or into a pipe `-o` names) and return its path; later calls reuse the file."""
    target = path or default_corpus_path()
    if target.is_file() and target.stat().st_size > 0:
        return target
    parts = []
    for file in stdlib_files(root):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text if text.endswith("\n") else text + "\n")
    if not parts:
        raise CorpusError("found no Python standard library source here; pass a corpus file to train on")
    write_output(target, "".join(parts).encode("utf-8"), "corpus")  # -o may name a pipe or a link
    return target
