"""Where charrnn keeps what it can rebuild: the default corpus and encoded corpus ids."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$CHARRNN_CACHE_DIR (or the older $CHARRNN_CACHE), else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn."""
    for name in ("CHARRNN_CACHE_DIR", "CHARRNN_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "charrnn"
