"""Shared fixtures: a small corpus of our own, tiny model options, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from charrnn.training.options import TrainOptions

# The suite runs one worker per core (pytest-xdist), each starting CLI subprocesses with their own
# torch threads: idle OpenMP threads must sleep, not spin, or the workers steal each other's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

# Our own text: a few made-up lines repeated with variation, enough for a tiny model to learn.
LINES = [
    "the cat sat on the mat.",
    "a dog ran in the fog!",
    "we sing of rain and grain,",
    "and the fox jumps over the box.",
    "is it true? it is true.",
]


def make_text(n_lines: int = 400) -> str:
    return "\n".join(f"{LINES[i % len(LINES)]} {i % 7}" for i in range(n_lines)) + "\n"


@pytest.fixture(scope="session", autouse=True)
def id_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the cache (encoded corpora) at a temporary directory for the whole suite, CLI runs included."""
    root = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("CHARRNN_CACHE_DIR")
    os.environ["CHARRNN_CACHE_DIR"] = str(root)
    yield root
    if saved is None:
        del os.environ["CHARRNN_CACHE_DIR"]
    else:
        os.environ["CHARRNN_CACHE_DIR"] = saved


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


def tiny_options(corpus: Path, out: Path | None, **changes: object) -> TrainOptions:
    """Options for a tiny, single-threaded model: fast enough for any test."""
    from charrnn.training.options import parse_options

    base: dict[str, object] = dict(
        out=None if out is None else str(out),
        hidden_size=16,
        embed_size=8,
        batch_size=4,
        seq_len=16,
        threads=1,
    )
    base.update(changes)
    return parse_options((str(corpus),), **base)


TINY_TRAIN = ["--hidden", "16", "--embed", "8", "--batch-size", "4", "--seq-len", "16", "--threads", "1"]


def run_cli(
    *args: str,
    cwd: Path | None = None,
    input: bytes | None = None,
    timeout: float = 120,
    extra_path: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run the real `charrnn` CLI in a subprocess (python -m charrnn), capturing bytes; `extra_path`
    goes first on its PYTHONPATH (a test can put a module there that shadows an installed one)."""
    path = str(REPO) if extra_path is None else os.pathsep.join([str(extra_path), str(REPO)])
    env = dict(os.environ, PYTHONPATH=path, COLUMNS="100", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model trained through the library, shared by tests that only read it."""
    from charrnn.training.loop import train

    root = tmp_path_factory.mktemp("trained")
    corpus = root / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    return train(tiny_options(corpus, root / "run", hidden_size=32, steps=40)).run_dir
